"""test_write_path.py - the write path as a user sees it: programs under the
library write, rename and delete files on one node, and every node serves
the result.  Real memcached, MariaDB, three nodes each with cs-replicate
serve and nginx under the library (workers as www-data), CS_REPLICAS=2.

Each test uses its own directory; a test that stops a server starts it
again.  Prints TAP-style lines and ends with "N passed, N failed".
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, as_web_user, free_port  # noqa: E402
from tap import (expect, run, copies, drain, eventually, file_sha, mkdir_web,  # noqa: E402
                 replicated, sha)

REPLICAS = 2


def run_ok(node, argv, **kw):
    p = node.run(argv, **kw)
    expect(p.returncode == 0, "%s runs" % argv[0], 0,
           (p.returncode, p.stdout[-500:], p.stderr[-2000:]))
    return p


# ---- tests -------------------------------------------------------------

def test_thousand_files_four_writers(c):
    """1,000 files by a shell redirect, cp, Python temp+rename and PHP
    file_put_contents+rename: each on >= CS_REPLICAS nodes, same bytes."""
    n1 = c.nodes[0]
    for d in ("sh", "cp", "py", "php"):
        mkdir_web(n1, d)
    src = os.path.join(c.tmp, "cp-src")
    os.makedirs(src)
    for i in range(250):
        with open(os.path.join(src, "c%03d.bin" % i), "wb") as f:
            f.write(os.urandom(1000 + i))
    os.chmod(src, 0o755)
    run_ok(n1, ["sh", "-c", 'cd %s/sh && i=0; while [ $i -lt 250 ]; do '
                'echo "shell file $i $$" > s$i.txt; i=$((i+1)); done' % n1.dir])
    run_ok(n1, ["cp", "-r", src + "/.", os.path.join(n1.dir, "cp")])
    run_ok(n1, ["python3", "-c", """
import os, tempfile
d = %r
for i in range(250):
    f = tempfile.NamedTemporaryFile(dir=d, prefix="tmp", delete=False)
    f.write(os.urandom(2000 + i))
    f.close()
    os.replace(f.name, os.path.join(d, "p%%03d.bin" %% i))
""" % os.path.join(n1.dir, "py")])
    run_ok(n1, ["php", "-r", """
$d = '%s';
for ($i = 0; $i < 250; $i++) {
    file_put_contents("$d/up$i.tmp", random_bytes(3000 + $i));
    rename("$d/up$i.tmp", "$d/f$i.jpg");
}""" % os.path.join(n1.dir, "php")])
    rels = (["sh/s%d.txt" % i for i in range(250)] + ["cp/c%03d.bin" % i for i in range(250)]
            + ["py/p%03d.bin" % i for i in range(250)] + ["php/f%d.jpg" % i for i in range(250)])
    drain(n1)
    ok = eventually(lambda: replicated(c, rels, REPLICAS), 30, 0.5)
    if not ok:
        bad = [r for r in rels if not replicated(c, [r], REPLICAS)]
        expect(False, "every file on >= %d nodes with identical bytes" % REPLICAS,
               [], bad[:5] + ["... %d in all" % len(bad)])
    n = c.sql("SELECT COUNT(*) FROM files WHERE deleted=0 AND (path LIKE 'sh/%' OR "
              "path LIKE 'cp/%' OR path LIKE 'py/%' OR path LIKE 'php/%')", db="cs").stdout.strip()
    expect(n == "1000", "the registry holds exactly the 1,000 final names", "1000", n)
    tmp = c.sql("SELECT path FROM files WHERE path LIKE 'py/tmp%' OR path LIKE 'php/%.tmp'",
                db="cs").stdout.split()
    expect(tmp == [], "temporary names renamed away were never registered", [], tmp[:5])
    status, body = c.nodes[2].get("/php/f7.jpg")
    expect(status == 200 and sha(body) == file_sha(os.path.join(n1.dir, "php/f7.jpg")),
           "node3 serves a PHP-written file", 200, status)


def test_long_lived_writer_replicates_while_running(c):
    """A worker that never exits (php-fpm, an upload daemon) replicates
    each file soon after its close, not at its exit."""
    n1 = c.nodes[0]
    d = mkdir_web(n1, "live")
    p = subprocess.Popen(["python3", "-c", """
import os, sys, time
for i in range(3):
    with open(os.path.join(%r, "f%%d.txt" %% i), "w") as f:
        f.write("file %%d\\n" %% i)
    if i == 0:
        sys.stdin.readline()
    time.sleep(0.2)
sys.stdin.read()
""" % d], env=n1.env(preload=True), preexec_fn=as_web_user(), stdin=subprocess.PIPE)
    try:
        # Its very first write alone: the agent learns of it from inotify.
        ok = eventually(lambda: replicated(c, ["live/f0.txt"], REPLICAS), 3)
        expect(ok, "a lone first write reaches a peer while the writer waits", ">= 2 copies",
               copies(c, "live/f0.txt"))
        p.stdin.write(b"go\n")
        p.stdin.flush()
        rels = ["live/f%d.txt" % i for i in range(3)]
        ok = eventually(lambda: replicated(c, rels, REPLICAS), 5)
        expect(p.poll() is None, "the writer is still running")
        expect(ok, "its files reached a peer while it runs", ">= 2 copies",
               [copies(c, r) for r in rels])
    finally:
        p.stdin.close()
        p.wait(10)


def test_host_descriptors_untouched(c):
    """A shell that closes and dups fd 1 for every redirect keeps its
    stdout: the library holds no descriptor but its journal, whose number
    it forgets when the shell closes or dups over it."""
    n1 = c.nodes[0]
    d = mkdir_web(n1, "fds")
    p = run_ok(n1, ["sh", "-c", "cd %s && i=0; while [ $i -lt 800 ]; do echo data$i > f$i; "
                    "echo line$i; i=$((i+1)); done" % d], timeout=120)
    lines = p.stdout.decode().split()
    expect(lines == ["line%d" % i for i in range(800)] and b"error" not in p.stderr,
           "the shell's stdout intact and nothing failed", "line0..line799",
           (len(lines), [l for l in lines if not l.startswith("line")][:3], p.stderr[-300:]))
    for i in (0, 400, 799):
        with open(os.path.join(d, "f%d" % i)) as f:
            expect(f.read() == "data%d\n" % i, "file f%d has its own bytes" % i)
    drain(n1)
    expect(replicated(c, ["fds/f%d" % i for i in range(800)], REPLICAS), "and all replicated")


def test_pushes_spread_over_nodes(c):
    n1 = c.nodes[0]
    d = mkdir_web(n1, "spread")
    run_ok(n1, ["sh", "-c", "cd %s && i=1; while [ $i -le 40 ]; do echo $i > s$i; i=$((i+1)); done"
                % d])
    drain(n1)
    held = [sum(1 for i in range(1, 41) if os.path.exists(os.path.join(n.dir, "spread/s%d" % i)))
            for n in c.nodes[1:]]
    expect(sum(held) == 40 and min(held) >= 10,
           "40 new files pushed to both other nodes, not all to one", "each >= 10", held)


def test_delete_rename_overwrite_propagate(c):
    n1, n2, n3 = c.nodes
    mkdir_web(n1, "dro")
    run_ok(n1, ["sh", "-c", "cd %s/dro && echo one > keep.txt && echo two > gone.txt && "
                "echo three > old.txt && echo v1 > over.txt" % n1.dir])
    drain(n1)
    for n in c.nodes:        # every node has read them (holds a copy)
        for f in ("keep.txt", "gone.txt", "old.txt", "over.txt"):
            status, _ = n.get("/dro/" + f)
            expect(status == 200, "%s serves dro/%s" % (n.name, f), 200, status)
    run_ok(n1, ["sh", "-c", "cd %s/dro && rm gone.txt && mv old.txt new.txt && "
                "echo v2-longer > over.txt" % n1.dir])
    drain(n1)

    def converged():
        for n in c.nodes:
            if n.get("/dro/gone.txt")[0] != 404 or n.get("/dro/old.txt")[0] != 404:
                return False
            if n.get("/dro/new.txt") != (200, b"three\n"):
                return False
            if n.get("/dro/over.txt") != (200, b"v2-longer\n"):
                return False
        return True
    ok = eventually(converged, 10)
    if not ok:
        got = {n.name: [n.get("/dro/" + f)[0] for f in ("gone.txt", "old.txt", "new.txt")]
               + [n.get("/dro/over.txt")[1]] for n in c.nodes}
        expect(False, "delete, rename and overwrite seen on every node",
               "gone 404, old 404, new 200, over v2", got)
    served = n1.stats()["files_served"]
    expect(n2.get("/dro/keep.txt") == (200, b"one\n"), "untouched file still served")
    expect(n1.stats()["files_served"] == served, "a hit still costs no transfer")


def test_long_non_ascii_path_replicates(c):
    """A path of 1,450 bytes in Japanese: 4,350 once percent-encoded in a
    journal line or URL, more than PATH_MAX.  Written, renamed and read
    like any other."""
    n1 = c.nodes[0]
    part = "写真" * 40                       # 240 bytes, under NAME_MAX
    rel = "jp/" + "/".join([part] * 6)
    mkdir_web(n1, rel)
    old, new = rel + "/古い.txt", rel + "/新しい.txt"
    data = "長い道のり\n".encode() * 100
    with open(os.path.join(c.tmp, "jp.txt"), "wb") as f:
        f.write(data)
    os.chmod(os.path.join(c.tmp, "jp.txt"), 0o644)
    run_ok(n1, ["cp", os.path.join(c.tmp, "jp.txt"), os.path.join(n1.dir, old)])
    drain(n1)
    ok = eventually(lambda: replicated(c, [old], REPLICAS), 15)
    expect(ok, "a %d-byte path is pushed to another node" % len(old.encode()),
           "on >= 2 nodes", copies(c, old))
    inodes = {n.name: os.stat(os.path.join(n.dir, old)).st_ino for n in c.nodes[1:]
              if os.path.exists(os.path.join(n.dir, old))}
    expect(c.nodes[2].get("/" + old) == (200, data), "node3 serves it")
    run_ok(n1, ["mv", os.path.join(n1.dir, old), os.path.join(n1.dir, new)])
    drain(n1)
    ok = eventually(lambda: all(n.get("/" + new) == (200, data) and
                                n.get("/" + old)[0] == 404 for n in c.nodes), 15)
    expect(ok, "its rename is seen on every node", "new 200, old 404",
           [(n.get("/" + new)[0], n.get("/" + old)[0]) for n in c.nodes])
    moved = {n.name: os.stat(os.path.join(n.dir, new)).st_ino for n in c.nodes
             if n.name in inodes}
    expect(moved == inodes, "the node it was pushed to renamed its copy, not fetched it again",
           inodes, moved)
    run_ok(n1, ["cp", os.path.join(c.tmp, "jp.txt"), os.path.join(n1.dir, rel, "二.txt")])
    drain(n1)
    for n in c.nodes:
        p = n.run(["ls", os.path.join(n.dir, rel)])
        expect(p.returncode == 0 and sorted(p.stdout.decode().split()) == ["二.txt", "新しい.txt"],
               "%s lists the long directory whole" % n.name, ["二.txt", "新しい.txt"],
               (p.returncode, p.stdout, p.stderr[-300:]))
    run_ok(n1, ["rm", os.path.join(n1.dir, new)])
    drain(n1)
    ok = eventually(lambda: all(n.get("/" + new)[0] == 404 for n in c.nodes), 15)
    expect(ok, "its delete is seen on every node", 404, [n.get("/" + new)[0] for n in c.nodes])


def test_kill9_after_close_loses_nothing(c):
    n1 = c.nodes[0]
    d = mkdir_web(n1, "k9")
    data = os.urandom(50000)
    src = os.path.join(c.tmp, "k9.bin")
    with open(src, "wb") as f:
        f.write(data)
    os.chmod(src, 0o644)
    p = n1.run(["python3", "-c", """
import os, signal
with open(%r, 'rb') as s, open(%r, 'wb') as f:
    f.write(s.read())
os.kill(os.getpid(), signal.SIGKILL)
""" % (src, os.path.join(d, "victim.bin"))])
    expect(p.returncode == -signal.SIGKILL, "writer died by SIGKILL", -9, p.returncode)
    ok = eventually(lambda: replicated(c, ["k9/victim.bin"], REPLICAS), 15)
    expect(ok, "cs-replicate serve finished the dead writer's journal",
           "on >= 2 nodes", copies(c, "k9/victim.bin"))
    expect(c.nodes[2].get("/k9/victim.bin") == (200, data), "node3 serves it")


def test_burst_in_one_batch_partial_failure(c):
    """A burst of writes from one live process is replicated as batches:
    new files, an overwrite (a new version) and the same bytes again (no
    new version) are registered together; a file no target can take, and
    one its writer cannot read, stay pending while the rest of their batch
    lands, and arrive once they can, from the same process, without a
    restart."""
    n1, n2, n3 = c.nodes
    d = mkdir_web(n1, "burst")
    run_ok(n1, ["sh", "-c", "cd %s && echo old > over.txt && echo same > same.txt" % d])
    drain(n1)
    mkdir_web(n1, "burst/blocked")
    for n in (n2, n3):      # a file where the directory must go: PUTs of it fail
        mkdir_web(n, "burst")
        with open(os.path.join(n.dir, "burst/blocked"), "w") as f:
            f.write("in the way\n")
    writer = subprocess.Popen(["python3", "-c", """
import os, sys
d = %r
for i in range(30):
    with open(os.path.join(d, "new%%02d.bin" %% i), "wb") as f:
        f.write(os.urandom(5000 + i))
open(os.path.join(d, "over.txt"), "w").write("new bytes\\n")
open(os.path.join(d, "same.txt"), "w").write("same\\n")
open(os.path.join(d, "blocked/x.txt"), "w").write("waits\\n")
fd = os.open(os.path.join(d, "unreadable.bin"), os.O_WRONLY | os.O_CREAT, 0)
os.write(fd, b"mode 000 until the test allows it\\n")
os.close(fd)
print("written", flush=True)
sys.stdin.read()
""" % d], env=n1.env(preload=True), preexec_fn=as_web_user(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    try:
        expect(writer.stdout.readline().strip() == "written", "the writer wrote its burst")
        rels = ["burst/new%02d.bin" % i for i in range(30)] + ["burst/over.txt"]
        ok = eventually(lambda: replicated(c, rels, REPLICAS), 20, 0.2)
        expect(ok, "the burst's files are on >= 2 nodes while its writer runs",
               ">= 2 copies each", [r for r in rels if not replicated(c, [r], REPLICAS)][:5])
        rows = dict(line.split("\t") for line in c.sql(
            "SELECT path, version FROM files WHERE path IN"
            " ('burst/over.txt', 'burst/same.txt', 'burst/new00.bin', 'burst/new29.bin')",
            db="cs").stdout.split("\n") if line)
        want = {"burst/over.txt": "2", "burst/same.txt": "1", "burst/new00.bin": "1",
                "burst/new29.bin": "1"}
        expect(rows == want, "overwrite is version 2, the same bytes again stay version 1",
               want, rows)
        expect(c.nodes[2].get("/burst/over.txt") == (200, b"new bytes\n"),
               "node3 serves the overwrite")
        expect(copies(c, "burst/blocked/x.txt")[1:] == [None, None],
               "the file no target could take is on no other node yet")
        expect(copies(c, "burst/unreadable.bin")[1:] == [None, None],
               "nor the file its own writer cannot read")
        for n in (n2, n3):
            os.unlink(os.path.join(n.dir, "burst/blocked"))
        os.chmod(os.path.join(d, "unreadable.bin"), 0o644)
        late = ["burst/blocked/x.txt", "burst/unreadable.bin"]
        ok = eventually(lambda: replicated(c, late, REPLICAS), 20, 0.2)
        expect(ok, "both arrive once they can, from the live writer",
               ">= 2 copies each", [copies(c, r) for r in late])
        expect(writer.poll() is None, "the writer was alive all along")
    finally:
        writer.stdin.close()
        expect(writer.wait(30) == 0, "the writer exits cleanly")


def test_replaced_while_registering(c):
    """Another writer renames other bytes over a path while the library is
    registering the first writer's bytes: the cluster ends up with what is
    on disk, not with the bytes that were hashed.  (The other writer here
    has no library, so only the agent replicating the first writer's journal
    can notice.)"""
    n1 = c.nodes[0]
    d = mkdir_web(n1, "swap")
    run_ok(n1, ["sh", "-c", "echo first > %s/a.txt" % d])
    drain(n1)
    # Hold the path's registry row: the next publish of it waits there,
    # after it has hashed the file.
    lock = subprocess.Popen(["mariadb", "--no-defaults", "-uroot", "--socket=" + c.mysql_socket,
                             "-N", "-B", "--unbuffered", "cs"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            text=True)
    lock.stdin.write("BEGIN; SELECT id FROM files WHERE path='swap/a.txt' FOR UPDATE;"
                     " SELECT 'locked';\n")
    lock.stdin.flush()
    expect(lock.stdout.readline() != "" and lock.stdout.readline().strip() == "locked",
           "a session holds the row")
    writer = subprocess.Popen(["python3", "-c", """
import os, sys
d = %r
with open(os.path.join(d, ".a.tmp"), "w") as f:
    f.write("hashed bytes\\n")
os.replace(os.path.join(d, ".a.tmp"), os.path.join(d, "a.txt"))
print("written", flush=True)
sys.stdin.read()
""" % d], env=n1.env(preload=True), preexec_fn=as_web_user(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    try:
        expect(writer.stdout.readline().strip() == "written", "the writer renamed its bytes in")
        time.sleep(0.5)     # hashed by now, and waiting for the row
        other = os.path.join(d, ".b.tmp")
        with open(other, "w") as f:
            f.write("bytes on disk\n")
        os.chmod(other, 0o644)
        os.replace(other, os.path.join(d, "a.txt"))
        lock.stdin.write("COMMIT;\n")
        lock.stdin.close()
        lock.wait(10)

        def settled():
            row = c.sql("SELECT LOWER(HEX(sha256)) FROM files WHERE path='swap/a.txt'",
                        db="cs").stdout.strip()
            return row == sha(b"bytes on disk\n") and replicated(c, ["swap/a.txt"], REPLICAS)
        ok = eventually(settled, 20, 0.2)
        expect(ok, "the registry and the other nodes end with the bytes on disk",
               sha(b"bytes on disk\n"), copies(c, "swap/a.txt"))
    finally:
        if lock.poll() is None:
            lock.kill()
        writer.stdin.close()
        expect(writer.wait(30) == 0, "the writer exits cleanly")


def forget_nodes(c):
    """Drop memcached's copy of the node table (kept 5 s), so the next
    process reads the nodes from MariaDB."""
    c.memcached("delete cs1:nodes")


def test_stalled_target_is_passed_over(c):
    """A target that accepts a push and reads nothing (an "up" node that
    holds nothing, so the first choice) is given up after a few seconds and
    passed over for a while: the write, and the writes after it, land on
    real nodes, and the stalling node is tried once by each agent that
    pushes, not for every file.
    The writer itself exits at once: replication is the agent's."""
    n1 = c.nodes[0]
    d = mkdir_web(n1, "stall")
    # Both real targets hold something, so a node holding nothing is first.
    run_ok(n1, ["sh", "-c", "cd %s && for i in 1 2 3 4 5 6; do echo $i > pre$i; done" % d])
    drain(n1)
    sink = socket.socket()
    sink.bind(("127.0.0.1", free_port()))       # this lane's (test_agent.py says why)
    sink.listen(16)
    sink.settimeout(0.1)
    url = "http://127.0.0.1:%d" % sink.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def take():
        while not stop.is_set():
            try:
                accepted.append(sink.accept()[0])
            except socket.timeout:
                pass
    t = threading.Thread(target=take)
    t.start()
    c.sql("INSERT INTO nodes (name, url, zone, heartbeat_at) VALUES ('stalling', '%s', '', NOW(3)"
          " + INTERVAL 1 HOUR)" % url, db="cs")
    try:
        forget_nodes(c)
        time.sleep(2.2)         # the agents' node tables (2 s) know it now
        t0 = time.monotonic()
        p = n1.run(["python3", "-c", "open(%r, 'w').write('stalled\\n')"
                    % os.path.join(d, "s.txt")])
        took = time.monotonic() - t0
        expect(p.returncode == 0 and took < 2, "the writer exits at once", "< 2 s", took)
        ok = eventually(lambda: replicated(c, ["stall/s.txt"], REPLICAS), 30, 0.2)
        expect(ok, "the write lands on a real node after the stalled push is given up",
               ">= 2 copies", copies(c, "stall/s.txt"))
        run_ok(n1, ["sh", "-c", "cd %s && for i in 1 2 3 4 5 6 7 8; do echo $i > after$i; done"
                    % d])
        rels = ["stall/after%d" % i for i in range(1, 9)]
        ok = eventually(lambda: replicated(c, rels, REPLICAS), 30, 0.2)
        expect(ok, "the writes after it land too", ">= 2 copies each",
               [r for r in rels if not replicated(c, [r], REPLICAS)])
        # Each agent that pushes passes it over after its own first try:
        # the writer's, and repair's on the other nodes (a file short of
        # copies while the stalled push hung is theirs to repair too).
        # Tried for each file would be 9 or more.
        expect(len(accepted) <= 1 + len(c.nodes),
               "the stalling node is passed over, not tried for each file",
               "<= %d connections" % (1 + len(c.nodes)), len(accepted))
    finally:
        stop.set()
        t.join()
        for conn in accepted:
            conn.close()
        c.sql("DELETE FROM nodes WHERE name='stalling'", db="cs")
        forget_nodes(c)
        sink.close()


def test_target_down_gets_file_after_return(c):
    n1, n2, n3 = c.nodes
    d = mkdir_web(n1, "down")
    n2.stop_serve()
    n3.stop_serve()
    try:
        # Nodes are "down" after 10 s without heartbeat; pushes fail at once.
        run_ok(n1, ["sh", "-c", "echo waiting > %s/w.txt" % d])
        time.sleep(1.5)
        # The same bytes again, with a new mtime: still the version registered.
        run_ok(n1, ["sh", "-c", "echo waiting > %s/w.txt" % d])
        expect(copies(c, "down/w.txt")[1:] == [None, None], "no copy while targets are down")
        n2.start_serve()
        ok = eventually(lambda: replicated(c, ["down/w.txt"], 2), 20)
        expect(ok, "the file reaches a target once it is back", ">= 2 copies",
               copies(c, "down/w.txt"))
    finally:
        if not n2.serve:
            n2.start_serve()
        if not n3.serve:
            n3.start_serve()


def test_mariadb_down_during_writes(c):
    n1 = c.nodes[0]
    d = mkdir_web(n1, "nodb")
    c.stop_mariadb()
    try:
        run_ok(n1, ["sh", "-c", "cd %s && for i in 1 2 3 4 5; do echo db-down-$i > f$i.txt; done" % d])
        for i in range(1, 6):
            with open(os.path.join(d, "f%d.txt" % i)) as f:
                expect(f.read() == "db-down-%d\n" % i, "write succeeded locally")
    finally:
        c.start_mariadb()
    rels = ["nodb/f%d.txt" % i for i in range(1, 6)]
    ok = eventually(lambda: replicated(c, rels, REPLICAS), 40, 0.5)
    expect(ok, "replicated once MariaDB is back", ">= 2 copies each",
           [copies(c, r) for r in rels])


def test_memcached_cold_restart(c):
    n1, n2, n3 = c.nodes
    d = mkdir_web(n1, "mc")
    run_ok(n1, ["sh", "-c", "echo first > %s/x.txt" % d])
    drain(n1)
    expect(n3.get("/mc/x.txt") == (200, b"first\n"), "node3 reads version 1")
    c.stop_memcached()
    c.start_memcached()
    run_ok(n1, ["sh", "-c", "echo second-version > %s/x.txt" % d])
    drain(n1)
    ok = eventually(lambda: all(n.get("/mc/x.txt") == (200, b"second-version\n")
                                for n in c.nodes), 10)
    expect(ok, "after a cold memcached every node serves the new version",
           "second-version", [n.get("/mc/x.txt") for n in c.nodes])


def test_fork_children_write(c):
    """A parent that loaded the library forks workers (nginx, Apache prefork,
    PHP-FPM style); some exit normally, some with _exit."""
    n1 = c.nodes[0]
    d = mkdir_web(n1, "fork")
    run_ok(n1, ["python3", "-c", """
import os
d = %r
open(os.path.join(d, "parent.txt"), "w").write("parent\\n")
kids = []
for k in range(4):
    pid = os.fork()
    if pid == 0:
        for i in range(5):
            with open(os.path.join(d, "k%%d-%%d.txt" %% (k, i)), "w") as f:
                f.write("child %%d file %%d\\n" %% (k, i))
        if k %% 2:
            os._exit(0)
        raise SystemExit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
""" % d])
    rels = ["fork/parent.txt"] + ["fork/k%d-%d.txt" % (k, i) for k in range(4) for i in range(5)]
    ok = eventually(lambda: replicated(c, rels, REPLICAS), 20, 0.3)
    expect(ok, "every child's files replicated", ">= 2 copies",
           [r for r in rels if not replicated(c, [r], REPLICAS)])


def test_concurrent_writers_last_registered_wins(c):
    n1, n2, n3 = c.nodes
    mkdir_web(n1, "race")
    mkdir_web(n2, "race")
    procs = [subprocess.Popen(
        ["sh", "-c", "i=1; while [ $i -le 40 ]; do echo %s-$i > %s/race/r.txt; i=$((i+1)); done"
         % (n.name, n.dir)],
        env=n.env(preload=True), preexec_fn=as_web_user()) for n in (n1, n2)]
    codes = [p.wait(60) for p in procs]
    expect(codes == [0, 0], "both writers ran at once", [0, 0], codes)
    drain(n1)
    drain(n2)

    def agreed():
        row = c.sql("SELECT HEX(sha256) FROM files WHERE path='race/r.txt'", db="cs").stdout.strip()
        got = [n.get("/race/r.txt") for n in c.nodes]
        return (all(s == 200 for s, _ in got) and len({b for _, b in got}) == 1
                and sha(got[0][1]).upper() == row)
    ok = eventually(agreed, 15)
    expect(ok, "every node serves the last registered version",
           "one content everywhere", [n.get("/race/r.txt") for n in c.nodes])


def test_drain_reports_failure(c):
    n1 = c.nodes[0]
    d = mkdir_web(n1, "drainfail")
    c.stop_mariadb()
    try:
        p = n1.run(["python3", "-c", "import os\nfor i in range(40):\n"
                    "    open(os.path.join(%r, 'a%%d.txt' %% i), 'w').write('x%%d' %% i)\n"
                    "os._exit(0)" % d])
        expect(p.returncode == 0, "writer ran", 0, p.stderr[-500:])
        p = n1.cs("drain", "--timeout", "2", check=False)
        expect(p.returncode == 1 and "pending" in p.stderr,
               "drain exits 1 and says why while MariaDB is down", 1, (p.returncode, p.stderr))
    finally:
        c.start_mariadb()
    drain(n1)
    rels = ["drainfail/a%d.txt" % i for i in range(40)]
    expect(replicated(c, rels, REPLICAS), "and replicates all 40 once it is back",
           ">= 2 copies each", [r for r in rels if not replicated(c, [r], REPLICAS)][:5])


TESTS = [
    test_thousand_files_four_writers,
    test_long_lived_writer_replicates_while_running,
    test_pushes_spread_over_nodes,
    test_host_descriptors_untouched,
    test_delete_rename_overwrite_propagate,
    test_kill9_after_close_loses_nothing,
    test_long_non_ascii_path_replicates,
    test_fork_children_write,
    test_memcached_cold_restart,
    test_concurrent_writers_last_registered_wins,
    test_burst_in_one_batch_partial_failure,
    test_replaced_while_registering,
    test_stalled_target_is_passed_over,
    test_target_down_gets_file_after_return,
    test_mariadb_down_during_writes,
    test_drain_reports_failure,
]


def main():
    return run(TESTS, Cluster(nodes=3, extra_env={"CS_REPLICAS": str(REPLICAS)},
                              log_level=os.environ.get("CS_TEST_LOG", "warn")),
               logs=("serve.log", "nginx-error.log"))


if __name__ == "__main__":
    sys.exit(main())
