"""test_cli.py - cs-replicate's command line and manual pages as a user
meets them.

* Every command (as `cs-replicate help` lists them) answers --help and -h
  with its usage on stdout and exit 0, with no configuration at all; a
  made-up option, a missing or extra argument and a bad value each get one
  line on stderr naming the problem, then the usage line, and exit 2.
* man/cs-replicate.1 and man/libcs.7 are clean for groff, mandoc and
  lexgrog; the SYNOPSIS of cs-replicate.1 is exactly the usage lines the
  binary prints, every command and option in it is accepted, its OPTIONS
  are those of the SYNOPSIS, and the variables in its ENVIRONMENT (and
  libcs.7's, and the README's tables) are exactly those the sources read:
  the pages and the program cannot drift apart.
* `import` prints its summary alone when stderr is not a terminal, and a
  progress line (count out of the total, bytes, rate, ETA) when it is a
  terminal (a pseudo-terminal here); `verify` and `repair` show theirs the
  same way, and all three end with the same form of summary on stdout.

Real memcached, MariaDB and two nodes with their agents (no web server).
Prints TAP-style lines and ends with "N passed, N failed".
"""
import fcntl
import os
import pty
import random
import re
import struct
import subprocess
import sys
import termios
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BUILD, TOP, Cluster, as_web_user  # noqa: E402
from tap import expect, run  # noqa: E402

CS = os.path.join(BUILD, "cs-replicate")
MAN1 = os.path.join(TOP, "man", "cs-replicate.1")
MAN7 = os.path.join(TOP, "man", "libcs.7")
FILES = 1000                    # per import test: a second or two each
SAMPLE = {"NAMESPACE": "img", "NAME": "node1", "SECONDS": "5", "R|max": "max",
          "COMMAND": "status"}


def bare_env():
    """No CS_* at all: what --help and a usage error must work with."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def cs(*args, env=None):
    return subprocess.run([CS] + list(args), env=env or bare_env(), capture_output=True,
                          text=True, timeout=30)


def usages():
    """Each usage `cs-replicate help` lists: (words, the whole line), e.g.
    (["node", "drain"], "node drain NAME [--wait] [--timeout SECONDS]")."""
    p = cs("help")
    expect(p.returncode == 0, "cs-replicate help exits 0", 0, (p.returncode, p.stderr))
    found = []
    for line in p.stdout.splitlines():
        if re.match(r"^  [a-z]", line):
            line = line.strip()
            words = []
            for w in line.split():
                if not re.match(r"^[a-z]+$", w):
                    break
                words.append(w)
            found.append((words, line))
    expect(len(found) >= 10, "help lists the commands", ">= 10 usages", found)
    return found


def render(page):
    """The page as plain text, lines not wrapped."""
    p = subprocess.run(["groff", "-man", "-Tascii", "-rLL=250n", "-P-cbou", page],
                       capture_output=True, text=True)
    expect(p.returncode == 0, "groff renders %s" % page, 0, (p.returncode, p.stderr))
    return p.stdout


def section(text, name):
    """The lines of section name (a heading at column 0) in rendered text."""
    lines, inside = [], False
    for line in text.splitlines():
        if re.match(r"^[A-Z]", line):
            inside = line.strip() == name
            continue
        if inside:
            lines.append(line)
    return lines


def tags(lines):
    """The tags of a section's tagged paragraphs: its lines at 7 spaces'
    indent (the text under a tag is indented further)."""
    return [line[7:] for line in lines if re.match(r"^ {7}\S", line)]


# ---- the command line ---------------------------------------------------

def test_every_command_has_help(c):
    for argv in (["--help"], ["-h"], ["help"]):
        p = cs(*argv)
        expect(p.returncode == 0 and p.stdout.startswith("usage: cs-replicate COMMAND")
               and not p.stderr, "cs-replicate %s: the overview, exit 0" % argv[0],
               "usage on stdout", (p.returncode, p.stdout[:80], p.stderr))
    p = cs()
    expect(p.returncode == 2 and "usage: cs-replicate COMMAND" in p.stderr,
           "no command: the overview on stderr, exit 2", 2, (p.returncode, p.stderr[:80]))
    for words, line in usages():
        for flag in ("--help", "-h"):
            p = cs(*(words + [flag]))
            expect(p.returncode == 0, "cs-replicate %s %s exits 0" % (" ".join(words), flag),
                   0, (p.returncode, p.stdout, p.stderr))
            expect(p.stdout.startswith("usage: cs-replicate " + line + "\n"),
                   "cs-replicate %s %s prints its usage first" % (" ".join(words), flag),
                   "usage: cs-replicate " + line, p.stdout[:200])
            expect(len(p.stdout.splitlines()) > 1 and not p.stderr,
                   "and what it does, nothing on stderr", "", (p.stdout, p.stderr))
        p = cs("help", words[0])
        expect(p.returncode == 0 and ("cs-replicate " + line) in p.stdout,
               "cs-replicate help %s says the same" % words[0], line, (p.returncode, p.stdout))


def test_unknown_option_is_named(c):
    for words, line in usages():
        p = cs(*(words + ["--no-such-option"]))
        err = p.stderr.splitlines()
        name = " ".join(words)
        expect(p.returncode == 2, "cs-replicate %s --no-such-option exits 2" % name, 2,
               (p.returncode, p.stderr))
        expect(len(err) == 2 and "'--no-such-option'" in err[0] and
               err[0].startswith("cs-replicate %s: " % name),
               "one line names the option", "cs-replicate %s: ... '--no-such-option'" % name,
               err)
        expect(err[1] == "usage: cs-replicate " + line and not p.stdout,
               "then the usage line, nothing on stdout", "usage: cs-replicate " + line,
               (err, p.stdout))
    for argv, what in ((["frob"], "'frob'"), (["--frob"], "'--frob'"),
                       (["node", "frob", "x"], "'frob'")):
        p = cs(*argv)
        expect(p.returncode == 2 and what in p.stderr.splitlines()[0] and "usage:" in p.stderr,
               "cs-replicate %s: named, exit 2" % " ".join(argv), what,
               (p.returncode, p.stderr))


def test_bad_arguments_exit_2(c):
    cases = [
        (["import"], "missing NAMESPACE"),
        (["import", "a", "b"], "unexpected argument 'b'"),
        (["node", "drain"], "missing NAME"),
        (["node"], "missing SUBCOMMAND"),
        (["status", "extra"], "unexpected argument 'extra'"),
        (["conflicts", "x"], "unexpected argument 'x'"),
        (["drain", "--timeout"], "--timeout needs a value"),
        (["drain", "--timeout", "soon"], "'soon' is not a whole number of seconds"),
        (["node", "drain", "n1", "--wait", "--timeout=-1"], "'-1' is not a whole number"),
        (["repair", "--rate", "1"], "'1' is not a rate in bytes per second"),
        (["verify", "--rate=fast"], "'fast' is not a rate"),
        (["status", "--json=yes"], "--json takes no value"),
        (["node", "remove", "n1", "--wait"], "unknown option '--wait'"),
        (["help", "frob"], "no command 'frob'"),
    ]
    # With a whole configuration too: the command line is judged first.
    for env in (bare_env(), c.nodes[0].env()):
        for argv, why in cases:
            p = cs(*argv, env=env)
            err = p.stderr.splitlines()
            expect(p.returncode == 2, "cs-replicate %s exits 2" % " ".join(argv), 2,
                   (p.returncode, p.stderr))
            expect(err and why in err[0] and any(e.startswith("usage: cs-replicate") for e in err),
                   "cs-replicate %s says why, then the usage" % " ".join(argv), why, err)


# ---- the manual pages -----------------------------------------------------

def test_man_pages_are_clean(c):
    for page in (MAN1, MAN7):
        p = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True)
        expect(p.returncode == 0 and not p.stderr, "groff -man -ww -z %s is silent" % page,
               "", (p.returncode, p.stderr))
        p = subprocess.run(["mandoc", "-T", "lint", page], capture_output=True, text=True)
        expect(p.returncode == 0 and not p.stdout and not p.stderr,
               "mandoc -T lint %s is silent" % page, "", (p.returncode, p.stdout, p.stderr))
        p = subprocess.run(["lexgrog", page], capture_output=True, text=True)
        expect(p.returncode == 0, "lexgrog finds the NAME of %s" % page, 0,
               (p.returncode, p.stdout, p.stderr))
        p = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
        expect(p.returncode == 0 and "SEE ALSO" in p.stdout, "man -l %s shows it" % page,
               0, (p.returncode, p.stderr))
    text = render(MAN1)
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "ENVIRONMENT",
                 "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        expect(section(text, name), "cs-replicate.1 has a %s section" % name, name, None)
    files = "\n".join(section(text, "FILES"))
    for f in ("agent.sock", "agent.lock", "CS_SPOOL/index", "CS_SPOOL/j.", "CS_SPOOL/lost/",
              "/etc/clusterstorage/agent.env", "/etc/clusterstorage/host.env"):
        expect(f in files, "FILES names %s" % f, f, files)
    status = "\n".join(tags(section(text, "EXIT STATUS")))
    expect(all(s in status.split() for s in ("0", "1", "2")), "EXIT STATUS has 0, 1 and 2",
           "0 1 2", status)


def test_man_synopsis_is_the_program(c):
    text = render(MAN1)
    synopsis = [l.strip() for l in section(text, "SYNOPSIS") if l.strip().startswith("cs-replicate ")]
    program = ["cs-replicate " + line for words, line in usages()]
    expect(sorted(synopsis) == sorted(program), "the SYNOPSIS is the usage the program prints",
           program, synopsis)
    commands = tags(section(text, "COMMANDS"))
    described = set()
    for line in synopsis:
        words, args, opts = [], [], []
        rest = line[len("cs-replicate "):]
        for m in re.finditer(r"\[(--[a-z-]+)(?: ([^\]]+))?\]|\[([A-Z|]+)\]|(\S+)", rest):
            if m.group(1):
                opts.append((m.group(1), m.group(2)))
            elif m.group(3):
                args.append(SAMPLE[m.group(3)])
            elif re.match(r"^[a-z]+$", m.group(4)) and not args:
                words.append(m.group(4))
            else:
                args.append(SAMPLE[m.group(4)])
        name = " ".join(words)
        expect(any(t.startswith(name) for t in commands), "COMMANDS describes %s" % name,
               name, commands)
        # Every option at once, then each with =VALUE: the parser takes
        # them (--help after them keeps the command from running).
        argv = words + args
        for o, v in opts:
            argv += [o] + ([SAMPLE[v]] if v else [])
            described.add(o)
        p = cs(*(argv + ["--help"]))
        expect(p.returncode == 0 and p.stdout.startswith("usage: cs-replicate " + name),
               "cs-replicate %s accepts what the SYNOPSIS says" % " ".join(argv), 0,
               (p.returncode, p.stderr))
        for o, v in opts:
            if v:
                p = cs(*(words + args + ["%s=%s" % (o, SAMPLE[v]), "--help"]))
                expect(p.returncode == 0, "cs-replicate %s %s=%s accepted" % (name, o, SAMPLE[v]),
                       0, (p.returncode, p.stderr))
    listed = set()
    for tag in [t for t in tags(section(text, "OPTIONS")) if t.startswith("-")]:
        listed |= set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", tag.split("(")[0]))
    expect(listed == described | {"-h", "--help"},
           "OPTIONS lists the SYNOPSIS's options and -h, --help", sorted(described | {"-h", "--help"}),
           sorted(listed))


def read_vars():
    """(the variables a host reads, those only cs-replicate reads), from the
    sources: what config.c and settings.c ask their getter for."""
    def found(path):
        src = open(os.path.join(TOP, path)).read()
        names = set(re.findall(r'get\("(CS_[A-Z_]+)"\)', src))
        names |= set(re.findall(r'\{ "(CS_[A-Z_]+)", offsetof', src))
        for v in re.findall(r'parse_secret\("(CS_[A-Z_]+)"', src):
            names |= {v, v + "_FILE"}    # read_secret_file: "%s_FILE"
        return names
    host = found("libcs/config.c")
    return host, found("agent/settings.c") - host


def test_man_environment_is_the_sources(c):
    host, agent = read_vars()
    expect({"CS_PREFIXES", "CS_SPOOL", "CS_MYSQL", "CS_SECRET_FILE"} <= host | agent,
           "the sources' variables are found", "CS_PREFIXES ...", sorted(host | agent))
    env1 = set()
    for tag in tags(section(render(MAN1), "ENVIRONMENT")):
        env1 |= set(re.findall(r"CS_[A-Z_]+", tag))
    expect(env1 == host | agent, "cs-replicate.1's ENVIRONMENT is every variable read",
           sorted(host | agent), sorted(env1))
    env7 = set()
    for tag in tags(section(render(MAN7), "ENVIRONMENT")):
        env7 |= set(re.findall(r"^CS_[A-Z_]+", tag))
    expect(env7 == host, "libcs.7's ENVIRONMENT is what a host reads", sorted(host),
           sorted(env7))
    readme = set()
    for line in open(os.path.join(TOP, "README.md")):
        if line.startswith("| `CS_"):
            readme |= set(re.findall(r"`(CS_[A-Z_]+)`", line.split("|")[1]))
    expect(readme == host | agent, "the README's Configuration tables say the same",
           sorted(host | agent), sorted(readme))


# ---- progress and summaries -----------------------------------------------

def make_tree(node, top, n):
    """n small files (1-4 KB) in 20 directories under top in node's
    directory, written behind the library's back as a tree to import."""
    rnd = random.Random(top)
    for i in range(n):
        node.put("%s/d%02d/f%05d.bin" % (top, i % 20, i), os.urandom(rnd.randint(1024, 4096)))


def regular_files(node):
    return sum(len(fs) for _, _, fs in os.walk(node.dir))


def on_terminal(node, *args):
    """cs-replicate args as node, stderr a pseudo-terminal 200 columns wide:
    (exit status, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    got = []

    def read():
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:         # EIO: every writer closed the terminal
                return
            if not b:
                return
            got.append(b)
    t = threading.Thread(target=read)
    t.start()
    p = subprocess.Popen([CS] + list(args), env=node.env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave, preexec_fn=as_web_user())
    os.close(slave)
    out, _ = p.communicate(timeout=300)
    t.join(30)
    os.close(master)
    return p.returncode, out.decode(), b"".join(got).decode(errors="replace")


def summary(what, unit, line):
    """line as the summary of what (import, verify, repair), or None."""
    return re.match(r"^%s: (\d+) %s \([\d.]+ k?[MGTP]?B\) in [\d.]+ s \(\d+ %s/s, [\d.]+ k?[MGTP]?B/s\): "
                    % (what, unit, unit), line)


def test_import_off_a_terminal_prints_the_summary_alone(c):
    n1 = c.nodes[0]
    make_tree(n1, "plain", FILES)
    p = n1.cs("import", c.namespace, check=False, timeout=300)
    lines = p.stdout.splitlines()
    expect(p.returncode == 0, "import exits 0", 0, (p.returncode, p.stdout, p.stderr))
    expect(len(lines) == 1 and summary("import", "files", lines[0]),
           "stdout is one summary line", "import: N files (X MB) in S s (R files/s, B/s): ...",
           p.stdout)
    expect(lines[0].endswith(": %d registered or already matching, 0 conflicting, 0 errors"
                             % FILES), "it counts every file", FILES, lines[0])
    expect(summary("import", "files", lines[0]).group(1) == str(FILES), "and says how many",
           FILES, lines[0])
    expect(p.stderr == "", "nothing on stderr: no progress line", "", p.stderr)


def test_import_on_a_terminal_shows_progress(c):
    n1 = c.nodes[0]
    make_tree(n1, "tty", FILES)
    total = regular_files(n1)
    rc, out, term = on_terminal(n1, "import", c.namespace)
    expect(rc == 0, "import exits 0", 0, (rc, out, term[-500:]))
    lines = [l for l in re.split(r"[\r\n]", term) if l.strip()]
    shown = [re.match(r"^import: (\d+)/(\d+) files \((\d+)%\), [\d.]+ k?[MGTP]?B", l.replace("\x1b[K", ""))
             for l in lines]
    shown = [m for m in shown if m]
    expect(shown, "the terminal shows progress lines", "import: N/T files (P%), X MB ...",
           term[:500])
    expect(all(int(m.group(2)) == total for m in shown),
           "out of the total counted first", total, sorted({m.group(2) for m in shown}))
    counts = [int(m.group(1)) for m in shown]
    expect(counts == sorted(counts) and counts[-1] <= total, "counting up", "rising", counts)
    expect(any("ETA " in l for l in lines), "with an ETA", "ETA m:ss", lines[-3:])
    expect(term.endswith("\r\x1b[K"), "the line is taken away for the summary", "\\r ESC[K",
           repr(term[-40:]))
    expect(len(out.splitlines()) == 1 and summary("import", "files", out.strip()),
           "the summary alone on stdout", "import: ...", out)
    expect(summary("import", "files", out.strip()).group(1) == str(total),
           "counting every file", total, out)


def test_verify_and_repair_show_the_same(c):
    n1 = c.nodes[0]
    for what, unit, argv in (("verify", "copies", ["verify", "--rate", "max"]),
                             ("repair", "copies", ["repair", "--timeout", "3"])):
        rc, out, term = on_terminal(n1, *argv)
        expect(rc in (0, 1), "%s ends" % what, "0 or 1", (rc, out, term[-300:]))
        expect(re.search(r"\r%s: \d+" % what, term), "%s shows a progress line" % what,
               "\\r%s: N ..." % what, term[:300])
        last = out.strip().splitlines()[-1] if out.strip() else ""
        expect(summary(what, unit, last), "%s ends with the summary" % what,
               "%s: N %s (X MB) in S s (...): ..." % (what, unit), out)
        p = n1.cs(*argv, check=False, timeout=300)
        expect("\r" not in p.stderr and not re.search(r"^%s: " % what, p.stderr, re.M),
               "%s off a terminal: no progress line" % what, "", p.stderr)
        expect(summary(what, unit, p.stdout.strip().splitlines()[-1]),
               "and the same summary", what, p.stdout)


TESTS = [
    test_every_command_has_help,
    test_unknown_option_is_named,
    test_bad_arguments_exit_2,
    test_man_pages_are_clean,
    test_man_synopsis_is_the_program,
    test_man_environment_is_the_sources,
    test_import_off_a_terminal_prints_the_summary_alone,
    test_import_on_a_terminal_shows_progress,
    test_verify_and_repair_show_the_same,
]


def main():
    return run(TESTS, Cluster(nodes=2, nginx=False,
                              log_level=os.environ.get("CS_TEST_LOG", "warn")))


if __name__ == "__main__":
    sys.exit(main())
