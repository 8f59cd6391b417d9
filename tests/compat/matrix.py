"""matrix.py - the compatibility matrix: real hosts under the library on a
3-node cluster, each doing the same scenario, and the table of what works.

  matrix.py [--out FILE] [--readme] [--jobs N] [HOST...]

One cluster (tests/integration/cluster.py: memcached, MariaDB, three
nodes each with its agent), CS_REPLICAS=1 so that a file is on the node
that wrote it and nowhere else until another node reads it: step read
reads a file its node never had, and step list lists a directory its node
has fetched nothing of, instead of copies a push or a repair put there
first.  Nodes 2 and 3 run the servers (servers.py); nodes 1, 2 and 3 a
probe (probe.py) through which the runner writes the seeds and checks,
under the library, what the other nodes see.

For each host (hosts.py), in its own directory of the namespace:
  read       the host on node 2 reads a file written on node 1
  write      the host on node 2 writes a new file; nodes 1 and 3 read it
  overwrite  ... overwrites it; nodes 1 and 3 read the new bytes
  rename     ... renames it; nodes 1 and 3 read the new name, not the old
  delete     ... deletes it; gone on nodes 1 and 3
  list       the host on node 3 lists a directory holding files written
             on nodes 1 and 2 (one in a subdirectory), none of them
             fetched by node 3
Replication is asynchronous: each check waits for it (up to CONVERGE s),
never a fixed time.  Hosts run side by side, N at once (default 3): most
of a step is waiting for another node.

Prints "ok N - host: step" / "not ok N - host: step" (a step that does not
apply: "ok N - host: step # SKIP reason", counted neither way) and ends
with "N passed, N failed".  Writes the Markdown table to --out; --readme
also puts it in README.md between the compat-table markers.
"""
import argparse
import base64
import concurrent.futures
import http.client
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from cluster import TOP, WEB_USER, Cluster  # noqa: E402
from tap import Fail, drain  # noqa: E402
from servers import HOST_PATH, Servers  # noqa: E402
from hosts import HOSTS, STEPS, short  # noqa: E402

CONVERGE = 10      # s a check waits for another node to see a change
# How programs become the web user: by subprocess itself, not a preexec_fn,
# which is unsafe in a program with threads.
AS_WEB_USER = {"user": WEB_USER, "group": WEB_USER, "extra_groups": []}
BEGIN, END = "<!-- compat-table: made by tests/compat/run --readme -->", "<!-- /compat-table -->"

# Why a step fails, where that is known: (host or "*", step, a part of the
# symptom, reason).  A failure that matches none says its reason is not
# known yet, so a new symptom is never explained by an old reason.
# None now: those of the matrix's first run (listings of what this node
# held only; a look at a name just renamed away fetching it back; `ln`
# refused to peers) are fixed, and their tests are in test_listing.py.
KNOWN = []


class Probe:
    """probe.py on a node, as the web user under the library."""

    def __init__(self, run, node):
        self.node = node
        self.lock = threading.Lock()        # hosts run side by side
        self.p = subprocess.Popen(["python3", os.path.join(HERE, "probe.py")],
                                  env=run.host_env(node), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, **AS_WEB_USER)

    def ask(self, req):
        with self.lock:
            self.p.stdin.write((json.dumps(req) + "\n").encode())
            self.p.stdin.flush()
            line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the probe on %s exited" % self.node.name)
        return json.loads(line)

    def read(self, rel):
        """The bytes of rel on this node, None when absent, else the error."""
        r = self.ask({"op": "read", "path": os.path.join(self.node.dir, rel)})
        if "data" in r:
            return base64.b64decode(r["data"])
        return None if r["errno"] == 2 else r["error"]

    def write(self, rel, data):
        r = self.ask({"op": "write", "path": os.path.join(self.node.dir, rel),
                      "data": base64.b64encode(data).decode()})
        if r:
            raise Fail("probe write on %s: %s" % (self.node.name, r["error"]))

    def stop(self):
        self.p.stdin.close()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def describe(state):
    if state is None:
        return "absent"
    if isinstance(state, bytes):
        return short(state)
    return "unreadable: " + state


class Run:
    """What the hosts' steps use: the nodes, their servers and probes, and
    helpers to run programs and wait for the cluster."""

    def __init__(self, cluster):
        self.c = cluster
        self.n1, self.n2, self.n3 = cluster.nodes
        self.servers = {}
        self.probes = {}
        self.serial = itertools.count(1)

    def start(self):
        pw = pwd.getpwnam(WEB_USER)
        for node in self.c.nodes:
            os.makedirs(self.home(node))
            os.chown(self.home(node), pw.pw_uid, pw.pw_gid)
        for node in (self.n2, self.n3):
            s = Servers(node)
            self.servers[node.name] = s
            s.start()
        for node in self.c.nodes:
            self.probes[node.name] = Probe(self, node)

    def stop(self):
        for s in self.servers.values():
            s.stop()
        for p in self.probes.values():
            p.stop()

    # -- programs ----------------------------------------------------------
    def home(self, node):
        """The web user's HOME for programs on node (made by start)."""
        return os.path.join(node.home, "compat", "home")

    def host_env(self, node, **extra):
        return node.env(preload=True, PATH=HOST_PATH, LANG="C", HOME=self.home(node), **extra)

    def plain_env(self):
        return {"PATH": HOST_PATH, "LANG": "C"}

    def run(self, node, argv, preload=True, extra=None, timeout=60, **kw):
        """argv as the web user on node: under the library with the host's
        environment, or (preload=False) with no ClusterStorage at all."""
        env = self.host_env(node) if preload else dict(self.plain_env(), HOME=self.home(node))
        env.update(extra or {})
        return subprocess.run(argv, env=env, capture_output=True, timeout=timeout, **AS_WEB_USER,
                              **kw)

    def version(self, argv):
        p = subprocess.run(argv, env=self.plain_env(), capture_output=True, text=True)
        return (p.stdout + p.stderr).strip()

    def show(self, text):
        """Text as a symptom says it: a node's directory is PREFIX, its
        scratch files TMP."""
        for node in self.c.nodes:
            text = text.replace(node.dir, "PREFIX").replace(os.path.join(node.home, "compat"),
                                                            "TMP")
        return text

    def command(self, argv):
        """A command line as a symptom shows it."""
        return " ".join(shlex.quote(self.show(a).replace("\n", "\\n")) for a in argv)

    def scratch_dir(self, node):
        d = os.path.join(node.home, "compat", "scratch", str(next(self.serial)))
        os.makedirs(d)
        pw = pwd.getpwnam(WEB_USER)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        return d

    def scratch_file(self, node, data=None, path=None, suffix=""):
        """A file name outside the prefix the web user may write; with
        data, the file holding it."""
        if path is None:
            path = os.path.join(self.scratch_dir(node), "f" + suffix)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
            pw = pwd.getpwnam(WEB_USER)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return path

    def http(self, port, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def log_tails(self, lines=5):
        """The last lines of each agent's and server's log, for a failure
        nobody has explained yet, as comment lines."""
        logs = [(n.name, "serve.log", os.path.join(n.home, "serve.log")) for n in self.c.nodes]
        logs += [(name, log, path) for name, s in self.servers.items() for log, path in s.logs()]
        out = []
        for who, log, path in logs:
            try:
                with open(path, errors="replace") as f:
                    out += ["#   %s/%s: %s" % (who, log, line)
                            for line in f.read().splitlines()[-lines:]]
            except OSError:
                pass
        return out

    # -- the cluster -------------------------------------------------------
    def write(self, node, rel, data):
        """Write rel on node under the library (the probe)."""
        self.probes[node.name].write(rel, data)

    def eventually(self, pred, timeout=CONVERGE):
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def converge(self, rel, want):
        """Nodes 1 and 3 read want (bytes, or None: absent) at rel, under
        the library, within CONVERGE s."""
        for node in (self.n1, self.n3):
            probe = self.probes[node.name]
            if not self.eventually(lambda: probe.read(rel) == want):
                raise Fail("node %d: %s is %s, expected %s" % (
                    node.index, rel, describe(probe.read(rel)), describe(want)))


# ---- the run -------------------------------------------------------------

class Result:
    def __init__(self, host):
        self.host = host
        self.version = "?"
        self.cells = {}      # step -> ("ok" | "fail" | "na", text)
        self.lines = []
        self.seconds = 0.0


def seed(run, hosts):
    """Every host's files of steps read and list, and node 2's directory
    for its writes; then wait until the registry has them all."""
    for h in hosts:
        on1, on2 = h.seeds(run)
        for rel, data in on1.items():
            run.write(run.n1, h.rel(rel), data)
        for rel, data in on2.items():
            run.write(run.n2, h.rel(rel), data)
        run.n2.mkdir(h.rel("w"))
    for h in hosts:
        h.prepare(run)
    drain(run.n1)
    drain(run.n2)


def run_host(run, h):
    """Every step of host h: its Result, whose lines are the TAP output,
    unnumbered (("ok" | "not ok", text) or ("#", text))."""
    res = Result(h)
    start = time.monotonic()
    try:
        res.version = h.version(run)
    except Exception as e:       # a host that cannot say is still run
        res.version = "? (%s)" % e
    for step in STEPS:
        if step in h.na:
            res.cells[step] = ("na", h.na[step])
            res.lines.append(("ok", "%s: %s # SKIP %s" % (h.name, step, h.na[step])))
            continue
        t = time.monotonic()
        try:
            caveat = getattr(h, step)(run)
            res.cells[step] = ("ok", caveat or "")
            res.lines.append(("ok", "%s: %s (%.1fs)" % (h.name, step, time.monotonic() - t)))
            if caveat:
                res.lines.append(("#", "#   but: " + caveat))
        except Exception as e:
            symptom = str(e) if isinstance(e, Fail) else "%s: %s" % (type(e).__name__, e)
            symptom = run.show(symptom)
            res.cells[step] = ("fail", symptom)
            res.lines.append(("not ok", "%s: %s (%.1fs)" % (h.name, step,
                                                            time.monotonic() - t)))
            res.lines += [("#", "#   " + line) for line in symptom.splitlines()]
            why = reason(h.name, step, symptom)
            res.lines.append(("#", "#   reason: " + (why or "not known yet")))
            if not why:
                res.lines += [("#", line) for line in run.log_tails()]
    res.seconds = time.monotonic() - start
    res.lines.append(("#", "# %s: %.1fs" % (h.name, res.seconds)))
    return res


def report(res, counter):
    """Print a host's lines, numbering its steps after those before."""
    for kind, text in res.lines:
        if kind == "#":
            print(text)
        else:
            counter[0] += 1
            print("%s %d - %s" % (kind, counter[0], text))
    sys.stdout.flush()


def reason(host, step, symptom):
    for h, s, part, why in KNOWN:
        if h in (host, "*") and s == step and part in symptom:
            return why
    return None


def table(results, summary):
    """The Markdown: a line on how it was made, the table, its notes (one
    for each symptom and reason, naming the cells it is for), and what
    each row runs."""
    out = [summary, "",
           "| host | version | " + " | ".join(STEPS) + " |",
           "|---|---|" + "---|" * len(STEPS)]
    notes = {}           # text -> (number, [cells])
    for r in results:
        cells = []
        for step in STEPS:
            kind, text = r.cells[step]
            if kind == "ok" and not text:
                cells.append("✓")
                continue
            if kind == "ok":
                body = "works, but %s." % text.rstrip(".")
            elif kind == "na":
                body = "does not apply: %s." % text.rstrip(".")
            else:
                body = "%s. Reason: %s" % (text.rstrip("."),
                                           reason(r.host.name, step, text) or "not known yet.")
            # hashes and object names differ from run to run; the table not
            body = re.sub(r"\b[0-9a-f]{12,64}\b", "…", body).replace("|", "/")
            number, where = notes.setdefault(body, (len(notes) + 1, []))
            where.append("%s (%s)" % (r.host.title, step))
            cells.append("%s [%d]" % ({"na": "n/a", "ok": "✓"}.get(kind, "✗"), number))
        out.append("| %s | %s | %s |" % (r.host.title, r.version.replace("|", "/"),
                                         " | ".join(cells)))
    out.append("")
    for body, (number, where) in notes.items():
        out.append("[%d] %s: %s  " % (number, "; ".join(where), body))
    if notes:
        out[-1] = out[-1].rstrip()
    out += ["", "What each row runs:", ""]
    for r in results:
        how = "; ".join("%s: %s" % (s, r.host.how[s]) for s in STEPS if s in r.host.how)
        out.append("* **%s**: %s." % (r.host.title, how))
    return "\n".join(out) + "\n"


def put_in_readme(text):
    path = os.path.join(TOP, "README.md")
    with open(path) as f:
        readme = f.read()
    a, b = readme.find(BEGIN), readme.find(END)
    if a < 0 or b < a:
        raise SystemExit("README.md has no %s ... %s markers" % (BEGIN, END))
    with open(path, "w") as f:
        f.write(readme[:a + len(BEGIN)] + "\n" + text + readme[b:])


def main():
    ap = argparse.ArgumentParser(description="the compatibility matrix")
    ap.add_argument("--out", default=os.path.join(TOP, os.environ.get("B", "build"), "compat.md"))
    ap.add_argument("--readme", action="store_true", help="also put the table in README.md")
    ap.add_argument("--jobs", type=int, default=3, help="hosts run at once (default 3)")
    ap.add_argument("hosts", nargs="*", help="only these hosts (default: all)")
    args = ap.parse_args()
    names = [h.name for h in HOSTS]
    unknown = [h for h in args.hosts if h not in names]
    if unknown:
        print("matrix: unknown host(s) %s; hosts: %s" % (" ".join(unknown), " ".join(names)),
              file=sys.stderr)
        return 2
    if args.readme and args.hosts:
        print("matrix: --readme takes the whole matrix, not some hosts", file=sys.stderr)
        return 2
    hosts = [h for h in HOSTS if not args.hosts or h.name in args.hosts]
    started = time.monotonic()
    results = []
    counter = [0]
    with Cluster(nodes=3, nginx=False, extra_env={"CS_REPLICAS": "1"},
                 log_level=os.environ.get("CS_TEST_LOG", "warn")) as c:
        run = Run(c)
        try:
            try:
                run.start()
                t = time.monotonic()
                seed(run, hosts)
            except Exception as e:
                # no host can run: one failure, said, and the summary
                print("not ok 1 - servers and seeds\n#   %s: %s" % (type(e).__name__, e))
                print("0 passed, 1 failed")
                return 1
            print("# cluster, servers and seeds: %.1fs (seeds %.1fs)"
                  % (time.monotonic() - started, time.monotonic() - t), flush=True)
            # Side by side, each in its own directory: most of a step is
            # waiting for another node.  Printed in the table's order.
            with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
                for res in pool.map(lambda h: run_host(run, h), hosts):
                    report(res, counter)
                    results.append(res)
        finally:
            run.stop()
            if os.environ.get("CS_KEEP_TMP") is None:
                for node in c.nodes:
                    shutil.rmtree(os.path.join(node.home, "compat", "scratch"), ignore_errors=True)
    passed = sum(1 for r in results for k, _ in r.cells.values() if k == "ok")
    failed = sum(1 for r in results for k, _ in r.cells.values() if k == "fail")
    elapsed = time.monotonic() - started
    summary = ("Made by `tests/compat/run` on %s: %d passed, %d failed, %d not applicable,"
               " in %.0f s." % (time.strftime("%Y-%m-%d"), passed, failed,
                                sum(len(r.host.na) for r in results), elapsed))
    text = table(results, summary)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print("# table in %s; whole run %.1fs" % (args.out, elapsed))
    if args.readme:
        put_in_readme(text)
        print("# README.md updated")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
