"""test_import.py - `cs-replicate import` of a tree that was there before
the cluster, registered in batches.

* A few thousand files in one import: every one is registered with its
  size and SHA-256, version 1, this node its pinned holder, its
  directories listed, and another node reads it; running the import again
  changes nothing in the registry (not even a row's update time).
* In one batch, each path is treated as it always was: other content
  already registered is a conflict left alone (exit 1), a tombstone gets
  the next version, the same content registered by another node gets this
  node as a second holder, and a copy this node pulled on a miss becomes a
  pinned one.
* An import interrupted (SIGINT, then SIGKILL) and run again registers
  every file exactly once.
* A batch whose INSERT MySQL answers with a deadlock (as Galera reports a
  certification failure) is tried again whole; one that keeps failing is
  registered file by file, and a file the server refuses fails alone.
* Two nodes importing the same tree at once (their batches race for the
  same new paths) both finish, each file version 1 with both holders.

Real memcached, MariaDB and two nodes with their agents (no web server,
no background repair or verify, which would make holder records too).
Prints TAP-style lines and ends with "N passed, N failed".
"""
import hashlib
import os
import pwd
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import WEB_USER, Cluster, as_web_user  # noqa: E402
from tap import eventually, expect, run  # noqa: E402


def make_tree(node, top, n, dirs=20, seed=None):
    """n files of 1-4 KB under top in node's directory, written behind the
    library's back: {rel: bytes}."""
    rnd = random.Random(seed if seed is not None else top)
    pw = pwd.getpwnam(WEB_USER)
    files = {}
    for d in range(min(n, dirs)):
        node.mkdir("%s/d%02d" % (top, d))
    for i in range(n):
        rel = "%s/d%02d/f%05d.bin" % (top, i % dirs, i)
        data = rnd.randbytes(rnd.randint(1024, 4096))
        path = os.path.join(node.dir, rel)
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        files[rel] = data
    return files


def rows(c, statement):
    out = c.sql(statement, db="cs").stdout
    return [line.split("\t") for line in out.splitlines()]


def registered(c, node, top):
    """{path: (size, sha256, version, deleted, pinned)} of the files under
    top that node holds, as the registry says."""
    got = rows(c, "SELECT f.path, f.size, LOWER(HEX(f.sha256)), f.version, f.deleted, r.pinned,"
                  " r.version, r.stale FROM files f JOIN replicas r ON r.file_id=f.id JOIN nodes n"
                  " ON n.id=r.node_id WHERE n.name='%s' AND f.path LIKE '%s/%%'" % (node.name, top))
    return {p: (int(s), h, int(v), int(d), int(pin)) for p, s, h, v, d, pin, rv, st in got
            if rv == v and st == "0"}


def snapshot(c, top):
    """Every column of the registry's rows for the files under top."""
    return (rows(c, "SELECT f.id, f.path, f.version, f.size, f.mtime_ns, HEX(f.sha256), f.deleted,"
                    " f.updated_at FROM files f WHERE f.path LIKE '%s/%%' ORDER BY f.id" % top),
            rows(c, "SELECT r.file_id, r.node_id, r.version, r.size, r.mtime_ns, r.stale, r.pinned,"
                    " r.updated_at FROM replicas r JOIN files f ON f.id=r.file_id"
                    " WHERE f.path LIKE '%s/%%' ORDER BY r.file_id, r.node_id" % top),
            rows(c, "SELECT path FROM dirs WHERE path='%s' OR path LIKE '%s/%%' ORDER BY path"
                    % (top, top)))


def test_batched_import_registers_every_file(c):
    n1, n2 = c.nodes
    files = make_tree(n1, "bulk", 3000, dirs=30)
    t = time.monotonic()
    p = n1.cs("import", c.namespace, check=False, timeout=120)
    took = time.monotonic() - t
    expect(p.returncode == 0, "import exits 0", 0, (p.returncode, p.stdout, p.stderr[-500:]))
    expect(p.stdout.strip().endswith(": 3000 registered or already matching, 0 conflicting,"
                                     " 0 errors"), "and counts 3000 files", 3000, p.stdout)
    want = {rel: (len(b), hashlib.sha256(b).hexdigest(), 1, 0, 1) for rel, b in files.items()}
    got = registered(c, n1, "bulk")
    bad = [r for r in want if got.get(r) != want[r]]
    expect(not bad and len(got) == 3000, "every file registered with its size and SHA-256,"
           " version 1, node1 its pinned holder", want.get(bad[0]) if bad else 3000,
           got.get(bad[0]) if bad else len(got))
    dirs = [r[0] for r in snapshot(c, "bulk")[2]]
    expect(dirs == ["bulk"] + ["bulk/d%02d" % i for i in range(30)], "its directories listed",
           31, dirs[:5])
    before = snapshot(c, "bulk")
    p = n1.cs("import", c.namespace, check=False, timeout=120)
    expect(p.returncode == 0, "the import again exits 0", 0, (p.returncode, p.stderr[-300:]))
    after = snapshot(c, "bulk")
    expect(after == before, "and changes nothing in the registry", "the same rows",
           [x for x in zip(before[0] + before[1], after[0] + after[1]) if x[0] != x[1]][:3])
    for rel in ("bulk/d00/f00000.bin", "bulk/d29/f02999.bin"):
        r = n2.run(["cat", os.path.join(n2.dir, rel)])
        expect(r.returncode == 0 and r.stdout == files[rel], "node2 reads %s" % rel, "its bytes",
               (r.returncode, r.stderr[-200:]))
    print("# 3000 files imported in %.1f s (%.0f files/s), with a cluster's startup noise"
          % (took, 3000 / took))


def test_import_keeps_what_it_did_to_each_path(c):
    n1, n2 = c.nodes
    ns = c.namespace
    # Other content at this path on node2, registered first.
    n2.put("mixed/theirs.bin", b"node2's content\n")
    # The same content on both nodes, node2's registered first.
    n2.put("mixed/same.bin", b"the same on both\n")
    # A path node2 registered and node1 then pulls on a miss.
    n2.put("mixed/pulled.bin", b"pulled by node1\n")
    n2.cs("import", ns)
    r = n1.run(["cat", os.path.join(n1.dir, "mixed/pulled.bin")])
    expect(r.returncode == 0, "node1 pulls mixed/pulled.bin", 0, r.stderr[-200:])
    expect(eventually(lambda: registered(c, n1, "mixed").get("mixed/pulled.bin", ())[4:] == (0,)),
           "node1's copy is recorded as pulled (not pinned)", 0, registered(c, n1, "mixed"))
    # A path node1 registered, then deleted through the library.
    n1.put("mixed/again.bin", b"first\n")
    n1.cs("import", ns)
    r = n1.run(["rm", os.path.join(n1.dir, "mixed/again.bin")])
    expect(r.returncode == 0, "rm mixed/again.bin", 0, r.stderr)
    expect(eventually(lambda: rows(c, "SELECT version, deleted FROM files WHERE"
                                      " path='mixed/again.bin'", ) == [["2", "1"]]),
           "its tombstone is version 2", [["2", "1"]],
           rows(c, "SELECT version, deleted FROM files WHERE path='mixed/again.bin'"))
    n1.put("mixed/theirs.bin", b"node1's content\n")
    n1.put("mixed/same.bin", b"the same on both\n")
    n1.put("mixed/again.bin", b"second\n")
    n1.put("mixed/new.bin", b"new\n")
    try:
        p = n1.cs("import", ns, check=False)
    finally:
        n1.put("mixed/theirs.bin", b"node2's content\n")    # for the imports after
    expect(p.returncode == 1, "a conflicting path: exit 1", 1, (p.returncode, p.stdout))
    expect(p.stdout.strip().endswith(" 1 conflicting, 0 errors"),
           "one conflict, no error", "1 conflicting, 0 errors", p.stdout)
    expect("mixed/theirs.bin: the registry holds different content" in p.stderr,
           "named on stderr", "mixed/theirs.bin: ...", p.stderr[-300:])
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    got = registered(c, n1, "mixed")
    want = {"mixed/same.bin": (17, sha(b"the same on both\n"), 1, 0, 1),
            "mixed/pulled.bin": (16, sha(b"pulled by node1\n"), 1, 0, 1),
            "mixed/again.bin": (7, sha(b"second\n"), 3, 0, 1),
            "mixed/new.bin": (4, sha(b"new\n"), 1, 0, 1)}
    expect(got == want, "same content: a second holder; pulled: now pinned; tombstone: the"
           " next version; new: version 1; the conflict: not held", want, got)
    theirs = rows(c, "SELECT f.version, LOWER(HEX(f.sha256)), GROUP_CONCAT(n.name) FROM files f"
                     " JOIN replicas r ON r.file_id=f.id JOIN nodes n ON n.id=r.node_id"
                     " WHERE f.path='mixed/theirs.bin' GROUP BY f.id")
    expect(theirs == [["1", sha(b"node2's content\n"), "node2"]],
           "the conflicting path is left as node2 registered it", None, theirs)
    same = rows(c, "SELECT GROUP_CONCAT(n.name ORDER BY n.name) FROM files f JOIN replicas r ON"
                   " r.file_id=f.id JOIN nodes n ON n.id=r.node_id WHERE f.path='mixed/same.bin'")
    expect(same == [["node1,node2"]], "the same content: both hold it", None, same)
    r = n2.run(["cat", os.path.join(n2.dir, "mixed/again.bin")])
    expect(r.returncode == 0 and r.stdout == b"second\n", "node2 reads the re-created file",
           b"second\n", (r.stdout, r.stderr[-200:]))


_demote = as_web_user()


def interruptible_web_user():
    """As the web user, with SIGINT's default action: tests/run starts
    the suites of a lane in the background, where a shell sets SIGINT
    ignored, and ignored signals stay so across exec (the import would
    not stop, as in CI)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _demote()


# Each new row of cut/ costs the server about a millisecond of work
# (a trigger hashing 10,000 times: 500 rows took 0.45 s more here), so
# that an import on any machine is still under way when its first batches
# are in and the signal comes.
SLOW = """DELIMITER //
CREATE TRIGGER cs.slow BEFORE INSERT ON cs.files FOR EACH ROW
BEGIN
  IF NEW.path LIKE 'cut/%' THEN
    DO BENCHMARK(10000, SHA2(NEW.path, 256));
  END IF;
END//
DELIMITER ;"""


def test_interrupted_import_finishes_when_run_again(c):
    """An import stopped by SIGINT, then by SIGKILL, part way: run again,
    it registers what is left, nothing twice."""
    n = 4000
    n1 = c.nodes[0]
    files = make_tree(n1, "cut", n, dirs=8)

    def count():
        return int(rows(c, "SELECT COUNT(*) FROM files WHERE path LIKE 'cut/%'")[0][0])
    c.sql(SLOW)
    try:
        done = 0
        for sig in (signal.SIGINT, signal.SIGKILL):
            # Stopped once a batch more than before is in.
            t = time.monotonic()
            p = subprocess.Popen([c.bin, "import", c.namespace], env=n1.env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 preexec_fn=interruptible_web_user)
            eventually(lambda: count() > done or p.poll() is not None, 60, 0.01)
            p.send_signal(sig)
            p.communicate(timeout=30)
            done = count()
            expect(p.returncode == -sig and done < n, "import stopped by %s part way"
                   % signal.Signals(sig).name, "< %d registered" % n, (p.returncode, done))
            print("# stopped by %s with %d of %d registered after %.2f s"
                  % (signal.Signals(sig).name, done, n, time.monotonic() - t))
    finally:
        c.sql("DROP TRIGGER IF EXISTS cs.slow")
    t = time.monotonic()
    p = n1.cs("import", c.namespace, check=False, timeout=120)
    print("# the rest in %.2f s" % (time.monotonic() - t))
    expect(p.returncode == 0, "run again, import exits 0", 0, (p.returncode, p.stderr[-300:]))
    got = registered(c, n1, "cut")
    want = {rel: (len(b), hashlib.sha256(b).hexdigest(), 1, 0, 1) for rel, b in files.items()}
    expect(got == want, "every file registered once, version 1, held by node1",
           len(want), (len(got), [r for r in want if got.get(r) != want[r]][:3]))
    dup = rows(c, "SELECT COUNT(*), COUNT(DISTINCT path) FROM files WHERE path LIKE 'cut/%'")
    expect(dup == [[str(n), str(n)]], "and no path twice", [[str(n), str(n)]], dup)

# Makes MySQL fail the INSERT of a path listed in t.flaky: a deadlock for
# its first `fails` tries (counted in a MyISAM table, which a rollback
# leaves alone), or always an error of its own when fails < 0.  racing.bin
# fails twice: its batch is tried 3 times whole.  stubborn.bin fails 6
# times: 4 tries of the batch, then alone, on its 3rd try.  refused.bin's
# error is no race: its batch once, then itself once, alone.
FLAKY = """CREATE DATABASE IF NOT EXISTS t;
CREATE TABLE IF NOT EXISTS t.flaky (path VARBINARY(255) PRIMARY KEY, fails INT NOT NULL,
  tries INT NOT NULL DEFAULT 0) ENGINE=MyISAM;
DELIMITER //
CREATE TRIGGER cs.flaky BEFORE INSERT ON cs.files FOR EACH ROW
BEGIN
  DECLARE f INT DEFAULT NULL;
  SELECT fails INTO f FROM t.flaky WHERE path=NEW.path;
  IF f IS NOT NULL THEN
    UPDATE t.flaky SET tries=tries+1 WHERE path=NEW.path;
    IF f < 0 THEN
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT='refused (a test)';
    ELSEIF (SELECT tries FROM t.flaky WHERE path=NEW.path) <= f THEN
      SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO=1213, MESSAGE_TEXT='Deadlock (a test)';
    END IF;
  END IF;
END//
DELIMITER ;"""


def test_racing_and_refused_files(c):
    n1 = c.nodes[0]
    c.sql(FLAKY)
    try:
        c.sql("INSERT INTO t.flaky (path, fails) VALUES ('odd/a/racing.bin', 2),"
              " ('odd/b/stubborn.bin', 6), ('odd/c/refused.bin', -1)")
        for top, name, code, tries in (("odd/a", "racing", 0, 3), ("odd/b", "stubborn", 0, 7),
                                       ("odd/c", "refused", 1, 2)):
            files = make_tree(n1, top, 40, dirs=1)
            n1.put("%s/%s.bin" % (top, name), name.encode())
            files["%s/%s.bin" % (top, name)] = name.encode()
            p = n1.cs("import", c.namespace, check=False)
            n = int(rows(c, "SELECT tries FROM t.flaky WHERE path LIKE '%s/%%'" % top)[0][0])
            expect(p.returncode == code and n == tries,
                   "%s.bin: exit %d after %d tries of its INSERT" % (name, code, tries),
                   (code, tries), (p.returncode, n, p.stdout, p.stderr[-300:]))
            got = registered(c, n1, top)
            if code == 0:
                expect(len(got) == 41, "all 41 files registered", 41, len(got))
            else:
                expect(len(got) == 40 and "%s/%s.bin" % (top, name) not in got,
                       "the other 40 registered", 40, sorted(got)[:3])
                expect(p.stdout.strip().endswith(", 0 conflicting, 1 errors") and
                       "odd/c/refused.bin: Input/output error" in p.stderr,
                       "the refused one is the one error", "odd/c/refused.bin: ...",
                       (p.stdout, p.stderr[-300:]))
    finally:
        c.sql("DROP TRIGGER IF EXISTS cs.flaky; DROP DATABASE IF EXISTS t")
        # the refused file left for the imports after: gone
        os.unlink(os.path.join(n1.dir, "odd/c/refused.bin"))


def test_two_nodes_import_one_tree_at_once(c):
    n1, n2 = c.nodes
    files = make_tree(n1, "twice", 1000, dirs=5)
    for rel, data in files.items():
        n2.put(rel, data)
    procs = [subprocess.Popen([c.bin, "import", c.namespace], env=n.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=as_web_user()) for n in (n1, n2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for n, p, (out, err) in zip((n1, n2), procs, outs):
        expect(p.returncode == 0 and out.strip().endswith(" 0 conflicting, 0 errors"),
               "%s's import exits 0, no conflict, no error" % n.name, 0,
               (p.returncode, out, err[-300:]))
    want = {rel: (len(b), hashlib.sha256(b).hexdigest(), 1, 0, 1) for rel, b in files.items()}
    for n in (n1, n2):
        got = registered(c, n, "twice")
        expect(got == want, "every file version 1, held by %s" % n.name, len(want),
               (len(got), [r for r in want if got.get(r) != want[r]][:3]))


TESTS = [
    test_batched_import_registers_every_file,
    test_import_keeps_what_it_did_to_each_path,
    test_interrupted_import_finishes_when_run_again,
    test_racing_and_refused_files,
    test_two_nodes_import_one_tree_at_once,
]


def main():
    # No background repair or verify: the holder records are import's alone.
    return run(TESTS, Cluster(nodes=2, nginx=False,
                              log_level=os.environ.get("CS_TEST_LOG", "warn"),
                              extra_env={"CS_REPAIR_RATE": "off", "CS_VERIFY_RATE": "off"}))


if __name__ == "__main__":
    sys.exit(main())
