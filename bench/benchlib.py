"""benchlib.py - what bench/run (the read path) and bench/run-write (the
write path) share: building the bench/ programs, running cases alternately,
callgrind, tmpfs mounts, restarting an agent with more environment, and
writing bench/RESULTS.md (the machine, the build, the table).

Not a benchmark itself; imported by the two scripts.
"""
import hashlib
import math
import os
import platform
import pwd
import re
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
from cluster import BUILD, WEB_USER  # noqa: E402

SIZE = 121 * 1024
BIN = os.path.join(TOP, "build", "bench")
LIB = os.path.join(BUILD, "libcs.so")
AGENT = os.path.join(BUILD, "cs-replicate")
RESULTS = os.path.join(TOP, "bench", "RESULTS.md")
WRITE_SECTION = "## Write path"
med = statistics.median


def build(*names, libs=()):
    """Compile bench/<name>.c into build/bench/<name> (plus pkg-config libs)."""
    os.makedirs(BIN, exist_ok=True)
    flags = []
    if libs:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs"] + list(libs),
                               capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        subprocess.run(["cc", "-O2", "-g", "-Wall", "-o", os.path.join(BIN, name),
                        os.path.join(TOP, "bench", name + ".c")] + flags, check=True)
    return [os.path.join(BIN, n) for n in names]


def native_env(**extra):
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    e.update(extra)
    return e


def web_dir(path):
    pw = pwd.getpwnam(WEB_USER)
    os.makedirs(path, exist_ok=True)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


class Tmpfs:
    """Mount a tmpfs (owned by the web user) over each directory while in
    the block; the directories are made first."""

    def __init__(self, dirs, size="2g", on=True):
        self.dirs, self.size, self.on = list(dirs), size, on

    def __enter__(self):
        pw = pwd.getpwnam(WEB_USER)
        for d in self.dirs:
            web_dir(d)
            if self.on:
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755,uid=%d,gid=%d"
                                % (self.size, pw.pw_uid, pw.pw_gid), "cs-bench", d], check=True)
        return self.dirs

    def __exit__(self, *exc):
        if self.on:
            for d in self.dirs:
                subprocess.run(["umount", "-l", d])


def settle(seconds=0.3):
    """Let earlier rounds' writeback reach the disk before the next round."""
    os.sync()
    time.sleep(seconds)


def pct(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[max(0, math.ceil(q * len(sorted_vals)) - 1)]


def pin(pids, cpu):
    """Pin processes (and all their threads) to one CPU."""
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True)


def proc_tree(pid):
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                          text=True).stdout.split()
    return [pid] + [int(k) for k in kids]


def alternate(name, a, b, rounds, unit=""):
    """Run a() (native) and b() (ClusterStorage) alternately, swapping which
    goes first each round; the lists of their results."""
    ra, rb = [], []
    for r in range(rounds):
        order = [(a, ra), (b, rb)] if r % 2 == 0 else [(b, rb), (a, ra)]
        for fn, acc in order:
            acc.append(fn())
        print("  %s round %d: native %.4g%s  cs %.4g%s  ratio %.3f"
              % (name, r + 1, ra[-1], unit, rb[-1], unit, rb[-1] / ra[-1]), flush=True)
    return ra, rb


def callgrind_total(argv, env, preexec_fn=None):
    """Instructions of a whole run under callgrind."""
    out = tempfile.mktemp(prefix="cs-callgrind.")
    p = subprocess.run(["valgrind", "--tool=callgrind", "--vgdb=no",
                        "--callgrind-out-file=" + out] + argv, env=env, capture_output=True,
                       text=True, preexec_fn=preexec_fn)
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if os.path.exists(out):
        os.unlink(out)
    if p.returncode != 0 or not m:
        raise RuntimeError("callgrind failed: %s" % p.stderr[-2000:])
    return int(m.group(1))


def restart_serve(node, **extra):
    """Stop node's agent and start it again with extra environment (CS_ZONE,
    CS_DB_CONNECTIONS ...)."""
    node.stop_serve()
    node.start_serve(**extra)


def cluster_log_lines(c):
    """What the agents logged besides their start line, and what the
    library logged in the hosts' error logs (lines with "cs["), per node."""
    lines = []
    for n in c.nodes:
        for name in ("serve.log", "nginx-error.log", "nginx.out", "apache-error.log",
                     "apache.out"):
            try:
                with open(os.path.join(n.home, name), errors="replace") as f:
                    for line in f:
                        line = line.rstrip("\n")
                        if name == "serve.log":
                            if line.strip() and "serving peers on" not in line:
                                lines.append("%s %s: %s" % (n.name, name, line))
                        elif " cs[" in line or line.startswith("cs["):
                            lines.append("%s %s: %s" % (n.name, name, line))
            except OSError:
                pass
    return lines


def log_summary(lines, show=5):
    """Markdown lines saying what the logs held."""
    if not lines:
        return ["Logs: the agents logged nothing but their start, and no host process logged a "
                "line of the library's (CS_LOG=error)."]
    out = ["Logs: %d line%s from the agents or the library (CS_LOG=error); the first %d:"
           % (len(lines), "" if len(lines) == 1 else "s", min(show, len(lines))), ""]
    out += ["    " + l[:300] for l in lines[:show]]
    return out


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    osname = "Linux"
    if hasattr(platform, "freedesktop_os_release"):
        try:
            osname = platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
        except OSError:
            pass
    return "%d vCPU %s, %d MB RAM, %s, Linux %s" % (
        os.cpu_count(), cpu, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20,
        osname, platform.release())


def build_id():
    """sha256 of the two build products and the source tree's revision."""
    sums = []
    for path in (LIB, AGENT):
        with open(path, "rb") as f:
            sums.append("%s sha256 %s" % (os.path.relpath(path, TOP),
                                          hashlib.sha256(f.read()).hexdigest()))
    head = subprocess.run(["git", "-C", TOP, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", TOP, "status", "--porcelain", "--", "libcs", "preload",
                            "agent", "include", "tools", "sql", "Makefile"],
                           capture_output=True, text=True).stdout
    if dirty.strip():
        head += " with uncommitted changes to the library or agent sources"
    return sums, head


def header(cmd, elapsed, quick):
    sums, head = build_id()
    lines = [
        "Command: `%s`, run %s, %.0f s." % (cmd, time.strftime("%Y-%m-%d %H:%M %Z"), elapsed),
        "Machine: %s. The machine is shared and noisy: other work runs on it at" % machine(),
        "the same time, and wall-clock figures move by several per cent from run to",
        "run; each comparison runs the native and the ClusterStorage case",
        "alternately in one run and reports the ratio, and callgrind instruction",
        "counts (which repeat exactly) are given where a budget is that tight.",
        "Build: %s; %s; source tree at %s." % (sums[0], sums[1], head),
    ]
    if quick:
        lines += ["", "**`--quick` run: few and short rounds, small sizes; indicative only.**"]
    return lines


def yes(ok):
    return "yes" if ok else "**no**"


def table(rows):
    """rows: (measure, native, cs, ratio, budget, met) -> markdown lines."""
    lines = ["| measure | native | ClusterStorage | ratio | budget | met |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    return lines


def write_read_section(lines):
    """Replace everything before the write path's section."""
    old = open(RESULTS).read() if os.path.exists(RESULTS) else ""
    i = old.find("\n" + WRITE_SECTION + "\n")
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n" + (old[i:] if i >= 0 else ""))


def write_write_section(lines):
    """Replace the write path's section; the sections after it (bench/import's)
    stay."""
    old = open(RESULTS).read() if os.path.exists(RESULTS) else "# Benchmark results\n"
    i = old.find("\n" + WRITE_SECTION + "\n")
    keep = old[:i + 1] if i >= 0 else old.rstrip("\n") + "\n\n"
    j = old.find("\n## ", i + 1) if i >= 0 else -1
    after = "\n" + old[j + 1:] if j >= 0 else ""
    with open(RESULTS, "w") as f:
        f.write(keep + "\n".join(lines).rstrip("\n") + "\n" + after)
