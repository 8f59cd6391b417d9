"""test_leaks.py - the node agent under valgrind.  Two of three agents run
as `valgrind --leak-check=full` while real work goes through them: misses
from a peer and for a peer, writes replicated to and from them,
overwrites, renames, deletes, 404s, signed and refused peer requests, a
memcached restart, a MariaDB outage, an agent stopped mid-work.  The last
test stops them with SIGTERM and asserts that memcheck found no error and
no definitely lost byte in any of their runs (nor in the cs-replicate
commands run under it on the way).

Real memcached, MariaDB, three nodes each with nginx under the library;
node1's agent runs natively, node2's and node3's under valgrind, which
makes them 20-50 times slower at their own work: they get longer to start
and stop, and every miss (CS_FETCH_TIMEOUT, CS_MISS_TIMEOUT) longer to
finish.  CS_REPLICAS=3, so every write reaches both.  Needs the plain
build: valgrind cannot run the sanitizer build.  (Valgrind 3.19 knows no
openat2: there the agent takes its walk without symlinks instead.)  Each
test uses its own names; a test that stops a server starts it again.
Prints TAP-style lines and ends with "N passed, N failed".
"""
import concurrent.futures
import glob
import os
import pwd
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BUILD, Cluster, WEB_USER, as_web_user  # noqa: E402
from tap import expect, run, copies, eventually, replicated, sha  # noqa: E402

REPLICAS = 3
VALGRIND_NODES = ("node2", "node3")
SLOW = "30"             # s: CS_FETCH_TIMEOUT and CS_MISS_TIMEOUT, for valgrind's pace
START_WAIT = 120        # s a valgrind agent gets to answer, and to stop


def valgrind(node):
    """The memcheck command line for a program run on node: one log per
    process in node's valgrind/ directory (the agent runs as the web
    user, so it is theirs)."""
    d = os.path.join(node.home, "valgrind")
    if not os.path.isdir(d):
        os.mkdir(d)
        pw = pwd.getpwnam(WEB_USER)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
            "--error-exitcode=99", "--track-fds=no", "--num-callers=30",
            "--log-file=" + os.path.join(d, "%p.log")]


def start_valgrind(node):
    node.start_serve(wrapper=valgrind(node), wait=START_WAIT)


def vg_cs(node, *args, timeout=300, ok=(0,)):
    """cs-replicate <args> on node under valgrind, which must exit with one
    of ok."""
    p = subprocess.run(valgrind(node) + [os.path.join(BUILD, "cs-replicate")] + list(args),
                       env=node.env(), capture_output=True, text=True,
                       preexec_fn=as_web_user(), timeout=timeout)
    expect(p.returncode in ok, "cs-replicate %s under valgrind on %s" % (" ".join(args), node.name),
           ok, (p.returncode, p.stdout[-500:], p.stderr[-500:]))
    return p


def vg_nodes(c):
    return [n for n in c.nodes if n.name in VALGRIND_NODES]


class ValgrindCluster(Cluster):
    """The cluster above: node2's and node3's agents restarted under
    valgrind once everything is up."""

    def start(self):
        super().start()
        for n in vg_nodes(self):
            n.stop_serve()
            start_valgrind(n)
        return self


def write(node, files):
    """Write {rel: bytes} on node through the library (a Python process as
    the web user), making directories as needed."""
    p = node.run(["python3", "-c", """
import os, sys
d = sys.argv[1]
args = sys.argv[2:]
for rel, src in zip(args[::2], args[1::2]):
    path = os.path.join(d, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(src, "rb") as s, open(path, "wb") as f:
        f.write(s.read())
""", node.dir] + [x for rel in files for x in (rel, stash(node, files[rel]))])
    expect(p.returncode == 0, "a writer on %s runs" % node.name, 0,
           (p.returncode, p.stderr[-500:]))


def stash(node, data):
    """data in a file anyone may read, outside every namespace directory."""
    d = os.path.join(node.cluster.tmp, "src")
    os.makedirs(d, mode=0o755, exist_ok=True)
    path = os.path.join(d, sha(data))
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return path


def sh(node, script):
    """A shell script on node under the library, as the web user, in its
    namespace directory."""
    p = node.run(["sh", "-ec", "cd %s && %s" % (node.dir, script)])
    expect(p.returncode == 0, "sh on %s: %s" % (node.name, script[:60]), 0,
           (p.returncode, p.stderr[-500:]))


def everywhere(c, want, timeout=60):
    """Each file of want {rel: bytes, or None} written comes to be on two
    nodes' disks at least (pushed), then every node serves it through
    nginx (a hit, or a miss that fetches it), and each None is a 404 with
    no copy left on disk.  (A node that failed a push is not asked again:
    CS_REPLICAS=3 is met on its next miss.)"""
    rels = [rel for rel, data in want.items() if data is not None]
    ok = eventually(lambda: replicated(c, rels, 2), timeout, 0.25)
    expect(ok, "each written file pushed to two nodes at least", ">= 2 copies",
           {rel: copies(c, rel) for rel in rels})

    def served(n, rel, data):
        if data is None:
            return n.get("/" + rel)[0] == 404 and not os.path.exists(os.path.join(n.dir, rel))
        return n.get("/" + rel, timeout=60) == (200, data)

    def done():
        return all(served(n, rel, data) for n in c.nodes for rel, data in want.items())
    if not eventually(done, timeout, 0.25):
        got = {rel: ["%d %s" % (s, sha(b)[:12]) for s, b in (n.get("/" + rel) for n in c.nodes)]
               for rel in want}
        expect(False, "every node serves what was written (None: 404, gone from disk)",
               {rel: sha(d)[:12] if d is not None else 404 for rel, d in want.items()}, got)


# ---- tests -------------------------------------------------------------

def test_misses_from_a_peer(c):
    """Files only node1 holds, read through nginx on the valgrind nodes:
    sizes from 0 to 3 MB, nested directories, a directory made on demand,
    and 16 concurrent misses of one file (one transfer)."""
    n1, n2, n3 = c.nodes
    files = {"miss/a.bin": os.urandom(100000), "miss/empty.bin": b"",
             "miss/deep/er/x.txt": b"deep\n", "miss/big.bin": os.urandom(3 << 20)}
    for rel, data in files.items():
        n1.put(rel, data)
    n1.import_ns()
    for rel in ("miss/a.bin", "miss/empty.bin", "miss/deep/er/x.txt"):
        got = n2.get("/" + rel, timeout=60)
        expect(got == (200, files[rel]), "node2 serves %s from node1" % rel, 200, got[0])
    p = n3.run(["stat", os.path.join(n3.dir, "miss/deep/er")])
    expect(p.returncode == 0 and os.path.isdir(os.path.join(n3.dir, "miss/deep/er")),
           "stat of a directory node3 lacks makes it", 0, (p.returncode, p.stderr))
    before = n1.stats()["files_served"]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda _: n3.get("/miss/big.bin", timeout=120), range(16)))
    bad = [s for s, b in got if (s, b) != (200, files["miss/big.bin"])]
    expect(not bad, "16 concurrent misses on node3 all served the file", [], bad)
    served = n1.stats()["files_served"] - before
    expect(served == 1, "one transfer for 16 concurrent misses", 1, served)


def test_serving_a_peer(c):
    """Files only node2 holds (imported by cs-replicate under valgrind),
    read through node1; and signed, unsigned, forged, stale and malformed
    requests to node2's peer endpoint."""
    n1, n2, n3 = c.nodes
    files = {"held2/f%d.bin" % i: os.urandom(1000 * i + 1) for i in range(5)}
    for rel, data in files.items():
        n2.put(rel, data)
    vg_cs(n2, "import", c.namespace)
    for rel, data in files.items():
        got = n1.get("/" + rel)
        expect(got == (200, data), "node1 serves %s from node2" % rel, 200, got[0])
    good = "/v1/files/%s/held2/f3.bin" % c.namespace
    data = files["held2/f3.bin"]
    # (node1's reads above may have found a copy that background repair
    # pushed meanwhile: only the GETs made here are sure to be node2's.)
    served = n2.stats()["files_served"]
    expect(n2.signed("GET", good) == (200, data), "a signed GET is served")
    expect(n2.signed("GET", good, headers={"Range": "bytes=10-19"}) == (206, data[10:20]),
           "a signed range GET is served")
    expect(n2.signed("HEAD", good)[0] == 200, "a signed HEAD is answered")
    expect(n2.signed("GET", good, sig=False)[0] == 401, "unsigned -> 401")
    expect(n2.signed("GET", good, sig="0" * 64)[0] == 401, "forged -> 401")
    expect(n2.signed("GET", good, when=int(time.time()) - 3600)[0] == 401, "stale -> 401")
    for path, raw in [("/v1/files/img/../etc/passwd", "/v1/files/img/%2e%2e/etc/passwd"),
                      ("/v1/files/img/..%2Fetc", "/v1/files/img/..%2Fetc"),
                      ("/v1/files/img/a%00b", "/v1/files/img/a%00b")]:
        got = n2.signed("GET", path, raw=raw)[0]
        expect(got == 400, "malformed path refused: " + raw, 400, got)
    got = n2.signed("GET", "/v1/files/%s/held2/nothing.bin" % c.namespace)[0]
    expect(got == 404, "a file node2 lacks -> 404", 404, got)
    expect(n2.signed("PATCH", good)[0] == 405, "PATCH -> 405")
    expect(n2.stats()["files_served"] >= served + 2, "node2 counted the two GETs it served",
           served + 2, n2.stats()["files_served"])
    # Healthy (0) or not yet, with its reasons (1: pulled copies do not
    # count, and repair may still be at work): either way it runs clean.
    p = vg_cs(n3, "status", ok=(0, 1))
    expect("node1" in p.stdout and (p.returncode == 0 or p.stderr.strip()),
           "status lists the nodes, and says why when not healthy", None, (p.stdout, p.stderr))


def test_writes_to_and_from(c):
    """Writes on node2 (valgrind) and on node1 reach every node; then
    overwrites of each other's files, and one more of the same bytes."""
    n1, n2, n3 = c.nodes
    w2 = {"w2/f%d.bin" % i: os.urandom(500 * i) for i in range(20)}
    w1 = {"w1/f%d.bin" % i: os.urandom(700 * i + 3) for i in range(20)}
    write(n2, w2)
    write(n1, w1)
    vg_cs(n2, "drain", "--timeout", "120")
    everywhere(c, {**w2, **w1})
    over = {"w2/f1.bin": b"node1 overwrites node2's\n", "w1/f2.bin": b"node3 overwrites node1's\n"}
    write(n1, {"w2/f1.bin": over["w2/f1.bin"]})
    write(n3, {"w1/f2.bin": over["w1/f2.bin"]})
    write(n2, {"w2/f3.bin": w2["w2/f3.bin"]})           # the same bytes: no new version
    everywhere(c, over)
    for n in c.nodes:
        for rel, data in over.items():
            got = n.get("/" + rel)
            expect(got == (200, data), "%s serves the new %s" % (n.name, rel), 200, got)


def test_renames_and_deletes(c):
    """Renames of files and of a directory, and deletes, made on node2
    (valgrind) and on node1, seen on every node."""
    n1, n2, n3 = c.nodes
    r2 = {"r2/a.txt": b"a\n", "r2/b.txt": b"b\n", "r2/dir/1.txt": b"1\n", "r2/dir/2.txt": b"2\n"}
    r1 = {"r1/c.txt": b"c\n", "r1/d.txt": b"d\n"}
    write(n2, r2)
    write(n1, r1)
    everywhere(c, {**r2, **r1})
    sh(n2, "mv r2/a.txt r2/a2.txt && mv r2/dir r2/dir2 && rm r2/b.txt")
    sh(n1, "mv r1/c.txt r1/c2.txt && rm r1/d.txt")
    everywhere(c, {"r2/a.txt": None, "r2/a2.txt": b"a\n", "r2/b.txt": None,
                   "r2/dir/1.txt": None, "r2/dir2/1.txt": b"1\n", "r2/dir2/2.txt": b"2\n",
                   "r1/c.txt": None, "r1/c2.txt": b"c\n", "r1/d.txt": None})
    for n in c.nodes:
        got = [n.get(p)[0] for p in ("/r2/b.txt", "/r1/d.txt", "/r2/a2.txt")]
        expect(got == [404, 404, 200], "%s: deleted names 404, renamed one 200" % n.name,
               [404, 404, 200], got)


def test_404s(c):
    """Never-registered names on the valgrind nodes (the index answers),
    through both of nginx's ways of looking."""
    for n in vg_nodes(c):
        for i in range(50):
            got = n.get("/never/%s-%d.jpg" % (n.name, i), try_files=i % 2 == 1)[0]
            expect(got == 404, "%s: a never-registered name is a 404" % n.name, 404, got)


def test_memcached_restart(c):
    """memcached stopped and started cold under the agents: misses go to
    MariaDB meanwhile, and work through the new memcached after."""
    n1, n2, n3 = c.nodes
    a, b = os.urandom(20000), os.urandom(30000)
    n1.put("mcr/a.bin", a)
    n1.put("mcr/b.bin", b)
    n1.import_ns()
    c.stop_memcached()
    try:
        got = n2.get("/mcr/a.bin", timeout=60)
        expect(got == (200, a), "memcached down: node2's miss is served", 200, got[0])
    finally:
        c.start_memcached()
    got = eventually(lambda: n3.get("/mcr/b.bin", timeout=60), 30, 0.5)
    expect(got == (200, b), "memcached back, cold: node3's miss is served", 200, got)
    write(n3, {"mcr/c.bin": b"after the restart\n"})
    everywhere(c, {"mcr/c.bin": b"after the restart\n"})


def test_mariadb_outage(c):
    """MariaDB stopped for a few seconds: hits are served, a miss is
    never a 404, a write on node2 waits and is replicated once it is
    back."""
    n1, n2, n3 = c.nodes
    held, later = os.urandom(10000), os.urandom(10000)
    n1.put("db/held.bin", held)
    n1.put("db/later.bin", later)
    n1.import_ns()
    expect(n2.get("/db/held.bin") == (200, held), "node2 holds db/held.bin before")
    c.stop_mariadb()
    try:
        expect(n2.get("/db/held.bin") == (200, held), "MariaDB down: a hit is served")
        got = n3.get("/db/later.bin", timeout=60)[0]
        expect(got in (200, 500), "MariaDB down: a registered file is 200 or 500, never 404",
               "200 or 500", got)
        write(n2, {"db/w.txt": b"written while MariaDB was down\n"})
        time.sleep(2)           # the agents meet the outage: breakers, retries
    finally:
        c.start_mariadb()
    everywhere(c, {"db/w.txt": b"written while MariaDB was down\n"}, 90)
    got = eventually(lambda: n3.get("/db/later.bin", timeout=60), 30, 0.5)
    expect(got == (200, later), "MariaDB back: node3's miss is served", 200, got)


def test_agent_stopped_mid_work(c):
    """node3's agent stopped with SIGTERM while misses on node3 and pushes
    to it are under way, and started again under valgrind: it exits 0,
    nginx answers 200 or 500 meanwhile (never 404), and everything is
    served once it is back."""
    n1, n3 = c.nodes[0], c.nodes[2]
    held = {"mid/h%d.bin" % i: os.urandom(200000 + i) for i in range(24)}
    for rel, data in held.items():
        n1.put(rel, data)
    n1.import_ns()
    pushed = {"mid/p%d.bin" % i: os.urandom(50000 + i) for i in range(24)}
    with concurrent.futures.ThreadPoolExecutor(9) as ex:
        gets = [ex.submit(n3.get, "/" + rel, timeout=120) for rel in held]
        writer = ex.submit(write, n1, pushed)
        time.sleep(0.5)
        rc = n3.stop_serve()
        statuses = sorted(set(f.result()[0] for f in gets))
        writer.result()
    expect(rc == 0, "node3's agent (valgrind) exits 0 on SIGTERM mid-work", 0, rc)
    expect(set(statuses) <= {200, 500}, "misses while it stops: 200 or 500, never 404",
           "200/500", statuses)
    start_valgrind(n3)
    everywhere(c, pushed, 90)
    for rel, data in held.items():
        got = n3.get("/" + rel, timeout=60)
        expect(got == (200, data), "node3's restarted agent serves " + rel, 200, got[0])


def report(path):
    """What memcheck said at the end of the log at path: errors, leak kinds
    in bytes, heap use; None for what it did not say."""
    text = open(path, errors="replace").read()

    def num(pattern):
        m = re.search(pattern, text)
        return int(m.group(1).replace(",", "")) if m else None
    r = {"errors": num(r"ERROR SUMMARY: ([\d,]+) errors"),
         "definitely": num(r"definitely lost: ([\d,]+) bytes"),
         "possibly": num(r"possibly lost: ([\d,]+) bytes"),
         "reachable": num(r"still reachable: ([\d,]+) bytes"),
         "allocs": num(r"total heap usage: ([\d,]+) allocs"),
         "bytes": num(r"frees, ([\d,]+) bytes allocated")}
    if "All heap blocks were freed" in text:
        r["definitely"] = r["possibly"] = r["reachable"] = 0
    m = re.search(r"Command: (.*)", text)
    r["command"] = m.group(1).split("/")[-1] if m else "?"
    return r


def test_valgrind_reports_clean(c):
    """Last: the valgrind agents stop on SIGTERM, exit 0, and memcheck
    reports 0 errors and 0 bytes definitely lost for every process it
    ran (agents and commands)."""
    for n in vg_nodes(c):
        rc = n.stop_serve()
        expect(rc == 0, "%s's agent under valgrind exits 0 on SIGTERM" % n.name, 0, rc)
    logs = sorted(glob.glob(os.path.join(c.tmp, "node*", "valgrind", "*.log")))
    runs = sum(report(p)["command"] == "cs-replicate serve" for p in logs)
    expect(runs >= len(vg_nodes(c)), "a memcheck report of each valgrind agent's run",
           ">= %d" % len(vg_nodes(c)), runs)
    bad = []
    for path in logs:
        r = report(path)
        where = "%s pid %s" % (path.split(os.sep)[-3], os.path.basename(path)[:-4])
        print("# %s: %s: %s errors, definitely lost %s, possibly lost %s, still reachable %s"
              " bytes; %s allocations, %s bytes in all"
              % (where, r["command"], r["errors"], r["definitely"], r["possibly"],
                 r["reachable"], r["allocs"], r["bytes"]), flush=True)
        if r["errors"] != 0 or r["definitely"] != 0:
            bad.append(path)
    for path in bad:
        text = open(path, errors="replace").read()
        for line in text.splitlines()[:80]:
            print("#   " + line)
    expect(not bad, "memcheck: 0 errors and 0 bytes definitely lost in every run", [], bad)


TESTS = [test_misses_from_a_peer, test_serving_a_peer, test_writes_to_and_from,
         test_renames_and_deletes, test_404s, test_memcached_restart, test_mariadb_outage,
         test_agent_stopped_mid_work, test_valgrind_reports_clean]


def main():
    return run(TESTS, ValgrindCluster(nodes=3, extra_env={"CS_REPLICAS": str(REPLICAS),
                                                          "CS_FETCH_TIMEOUT": SLOW},
                                      host_env={"CS_MISS_TIMEOUT": SLOW}))


if __name__ == "__main__":
    sys.exit(main())
