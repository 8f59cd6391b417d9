"""test_cache.py - the cache quota, CS_CACHE_MAX, as a user sees it: a node
that reads many files it was never given keeps its copies within the quota
by evicting, least recently used first, the ones it merely pulled; the
registry then no longer names it as their holder, and reading one again
simply fetches it again.  Copies that count toward CS_REPLICAS (written on
the node, pushed to it) are never evicted, even when they alone are over
the quota, which the log says; nor is a pulled copy changed on the node
whose journal entry still waits.  CS_CACHE_MAX=N% is accepted and a
malformed value refused.

Real memcached, MariaDB, three nodes with cs-replicate serve, CS_REPLICAS=2.
node3 is the one that reads: each test restarts its agent, first without a
quota to pull files, then with one.  The files it pulls are held by node1
and node2 already (two copies that count), so nothing else wants them.
Access times are set with os.utime, within the last day and after the
files' mtime, so the order is the test's and a read (under relatime) moves
none of them.  Each test deletes its files at the end.  Prints TAP-style
lines and ends with "N passed, N failed".
"""
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BUILD, Cluster  # noqa: E402
from tap import expect, run, eventually, mkdir_web, sha, file_sha  # noqa: E402

REPLICAS = 2
SIZE = 10000
HOUR_NS = 3600 * 10**9
OLD_MTIME_NS = time.time_ns() - 10 * 24 * HOUR_NS      # the files as written, long ago


def q(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def record(c, rel):
    """The registry's row for img/rel: version, size, mtime_ns, sha."""
    out = c.sql("SELECT version, size, mtime_ns, LOWER(HEX(sha256)) FROM files"
                " WHERE namespace='img' AND path=%s AND deleted=0" % q(rel), db="cs").stdout.split()
    if not out:
        return None
    return {"version": int(out[0]), "size": int(out[1]), "mtime_ns": int(out[2]), "sha": out[3]}


def rows(c, node, prefix):
    """{rel: (pinned, version)}: node's current copies of files below prefix,
    as the replicas table records them."""
    out = c.sql("SELECT f.path, r.pinned, r.version FROM replicas r"
                " JOIN files f ON f.id=r.file_id AND f.version=r.version AND f.deleted=0"
                " JOIN nodes n ON n.id=r.node_id"
                " WHERE n.name=%s AND r.stale=0 AND f.namespace='img' AND f.path LIKE %s"
                % (q(node.name), q(prefix + "/%")), db="cs").stdout
    return {p: (int(pin), int(v)) for p, pin, v in (l.split("\t") for l in out.splitlines())}


def usage(c, node):
    """(all, pinned): bytes of node's current copies, as the agent counts them."""
    out = c.sql("SELECT COALESCE(SUM(f.size), 0), COALESCE(SUM(IF(r.pinned, f.size, 0)), 0)"
                " FROM replicas r JOIN files f ON f.id=r.file_id AND f.version=r.version"
                " AND f.deleted=0 JOIN nodes n ON n.id=r.node_id"
                " WHERE n.name=%s AND r.stale=0" % q(node.name), db="cs").stdout.split()
    return int(out[0]), int(out[1])


def on_disk(node, rel):
    return os.path.exists(os.path.join(node.dir, rel))


def restart(node, **env):
    """node's agent again, with env (CS_CACHE_MAX ...) over its own."""
    node.stop_serve()
    node.start_serve(**env)


def shared(c, files):
    """files ({rel: bytes}) held by node1 and node2, both counting toward
    CS_REPLICAS: put on both with one old mtime, and imported on both."""
    n1, n2 = c.nodes[0], c.nodes[1]
    for node in (n1, n2):
        for rel, data in files.items():
            path = node.put(rel, data)
            os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
        node.cs("import", "img", check=False)    # other tests' files may clash
    prefix = next(iter(files)).split("/")[0]
    for node in (n1, n2):
        got = rows(c, node, prefix)
        expect(all(got.get(rel, (0, 0))[0] == 1 for rel in files),
               "test setup: %s holds every file, pinned" % node.name, sorted(files), got)


def pull(node, files):
    """Read each file on node through the library (a miss that fetches it)."""
    for rel, data in files.items():
        p = node.run(["cat", os.path.join(node.dir, rel)])
        expect(p.returncode == 0 and p.stdout == data,
               "%s reads %s through the library" % (node.name, rel), sha(data),
               (p.returncode, sha(p.stdout), p.stderr[-200:]))


def recorded(c, node, rels, pinned):
    """Wait until node's copies of rels are all recorded with pinned."""
    prefix = rels[0].split("/")[0]
    ok = eventually(lambda: all(rows(c, node, prefix).get(r, (-1, 0))[0] == pinned
                                for r in rels), 30)
    expect(ok, "%s's copies recorded (pinned=%d)" % (node.name, pinned), sorted(rels),
           rows(c, node, prefix))


def set_atimes(node, order):
    """Access times in the order given, oldest first: within the last day,
    an hour apart, all after the files' mtime; mtimes untouched."""
    base = time.time_ns() - 20 * HOUR_NS
    for k, rel in enumerate(order):
        path = os.path.join(node.dir, rel)
        os.utime(path, ns=(base + k * HOUR_NS, os.stat(path).st_mtime_ns))


def log_from(node, offset):
    with open(os.path.join(node.home, "serve.log"), errors="replace") as f:
        f.seek(offset)
        return f.read()


def log_size(node):
    return os.path.getsize(os.path.join(node.home, "serve.log"))


def cleanup(c, rels):
    """Delete rels through the library on a node that has each, and wait
    until no node holds them."""
    for rel in rels:
        for node in c.nodes:
            if on_disk(node, rel):
                node.run(["rm", "-f", os.path.join(node.dir, rel)])
                break
    prefix = rels[0].split("/")[0]
    gone = eventually(lambda: not any(rows(c, n, prefix) for n in c.nodes) and
                      not any(on_disk(n, r) for n in c.nodes for r in rels), 60)
    expect(gone, "test cleanup: every copy of %s/ gone" % prefix)


def random_files(prefix, n, size=SIZE):
    return {"%s/f%02d.bin" % (prefix, i): os.urandom(size) for i in range(n)}


# ---- tests -------------------------------------------------------------

def test_cache_max_values(c):
    """A malformed CS_CACHE_MAX stops `cs-replicate serve` with exit 2 and a
    line naming it; N% is a share of the namespace's filesystem."""
    n3 = c.nodes[2]
    for bad in ("12Q", "150%", "0%", "-5", "%", "10 M"):
        p = subprocess.run([os.path.join(BUILD, "cs-replicate"), "serve"],
                           env=n3.env(CS_CACHE_MAX=bad), capture_output=True, text=True,
                           timeout=30)
        expect(p.returncode == 2 and "CS_CACHE_MAX" in p.stderr and repr(bad)[1:-1] in p.stderr,
               "CS_CACHE_MAX=%r: exit 2, a line naming it" % bad, (2, "CS_CACHE_MAX: '%s' ..." % bad),
               (p.returncode, p.stderr.strip()))
    start = log_size(n3)
    restart(n3, CS_CACHE_MAX="50%")
    v = os.statvfs(n3.dir)
    want = v.f_blocks * v.f_frsize // 100 * 50
    line = "pulled copies kept within %d bytes (CS_CACHE_MAX)" % want
    expect(eventually(lambda: line in log_from(n3, start), 10),
           "CS_CACHE_MAX=50%: half the filesystem", line, log_from(n3, start)[-500:])
    restart(n3)


def test_pulled_copies_evicted_least_recently_used(c):
    """Over the quota, node3 evicts the pulled copies read least recently
    until it is within it: they leave its disk and the replicas table;
    node1 and node2 keep theirs; reading one again fetches it again, and
    then the next least recently used goes."""
    n3 = c.nodes[2]
    restart(n3)
    files = random_files("lru", 10)
    rels = sorted(files)
    shared(c, files)
    pull(n3, files)
    recorded(c, n3, rels, 0)
    order = [rels[i] for i in (3, 7, 0, 9, 5, 1, 8, 2, 6, 4)]     # oldest first
    set_atimes(n3, order)
    held, _ = usage(c, n3)
    quota = held - 10 * SIZE + 4 * SIZE + SIZE // 2              # room for 4 of them
    restart(n3, CS_CACHE_MAX=str(quota))
    within = eventually(lambda: usage(c, n3)[0] <= quota, 60)
    expect(within, "node3 gets within CS_CACHE_MAX", quota, usage(c, n3))
    evicted, kept = order[:6], order[6:]
    got = rows(c, n3, "lru")
    expect(sorted(got) == sorted(kept), "the 4 read most recently keep their record, the 6"
           " read least recently have none", sorted(kept), sorted(got))
    on3 = sorted(r for r in rels if on_disk(n3, r))
    expect(on3 == sorted(kept), "... and only those 4 are on node3's disk", sorted(kept), on3)
    for node in c.nodes[:2]:
        mine = rows(c, node, "lru")
        expect(sorted(mine) == rels and all(pin == 1 for pin, _ in mine.values()),
               "%s still holds all 10, counting" % node.name, rels, mine)

    # Read again: fetched again, correct, recorded; the next oldest goes.
    again = evicted[0]
    pull(n3, {again: files[again]})
    recorded(c, n3, [again], 0)
    ok = eventually(lambda: usage(c, n3)[0] <= quota and kept[0] not in rows(c, n3, "lru"), 60)
    got = rows(c, n3, "lru")
    expect(ok and again in got and on_disk(n3, again) and not on_disk(n3, kept[0]),
           "the copy read again stays, the least recently read one goes",
           sorted(kept[1:] + [again]), sorted(got))
    expect(file_sha(os.path.join(n3.dir, again)) == sha(files[again]),
           "the copy fetched again is the file")
    cleanup(c, rels)


def test_counted_copies_never_evicted(c):
    """Copies written on node3 and one pushed to it count toward CS_REPLICAS:
    with a quota under what they alone take, every pulled copy goes, they
    all stay, and the log says why node3 stays over its quota."""
    n1, n3 = c.nodes[0], c.nodes[2]
    restart(n3)
    mkdir_web(n3, "pin")
    written = {"pin/w%d.bin" % i: os.urandom(SIZE) for i in range(3)}
    for rel, data in written.items():
        p = n3.run(["sh", "-c", 'cat > "$1"', "sh", os.path.join(n3.dir, rel)], input=data)
        expect(p.returncode == 0, "%s written on node3" % rel, 0, p.stderr)
    recorded(c, n3, sorted(written), 1)
    # A push, as a writer's agent makes it: node1 has the file registered.
    pushed = "pin/pushed.bin"
    data = os.urandom(SIZE)
    n1.put(pushed, data)
    n1.cs("import", "img", check=False)
    rec = record(c, pushed)
    expect(rec and rec["sha"] == sha(data), "test setup: %s registered on node1" % pushed)
    status, body = n3.signed("PUT", "/v1/files/img/" + pushed, body=data, body_sha=rec["sha"],
                             headers={"X-CS-SHA256": rec["sha"],
                                      "X-CS-Version": str(rec["version"]),
                                      "X-CS-Mtime": str(rec["mtime_ns"])})
    expect(status == 200, "the push to node3 is stored", 200, (status, body))
    counted = sorted(list(written) + [pushed])
    recorded(c, n3, counted, 1)
    pulled = {"pin/q%d.bin" % i: os.urandom(SIZE) for i in range(3)}
    shared(c, pulled)
    pull(n3, pulled)
    recorded(c, n3, sorted(pulled), 0)

    _, pinned = usage(c, n3)
    quota = pinned // 2
    start = log_size(n3)
    restart(n3, CS_CACHE_MAX=str(quota))
    gone = eventually(lambda: not any(r in rows(c, n3, "pin") for r in pulled) and
                      not any(on_disk(n3, r) for r in pulled), 60)
    expect(gone, "every pulled copy is evicted", [], sorted(r for r in pulled if on_disk(n3, r)))
    said = eventually(lambda: "exceed CS_CACHE_MAX" in log_from(n3, start), 20)
    expect(said, "node3 says its counted copies alone exceed CS_CACHE_MAX", "a warning",
           log_from(n3, start)[-500:])
    got = rows(c, n3, "pin")
    expect(sorted(got) == counted and all(pin == 1 for pin, _ in got.values()),
           "the written and pushed copies keep their records", counted, got)
    for rel in counted:
        want = written.get(rel, data)
        expect(file_sha(os.path.join(n3.dir, rel)) == sha(want), "%s still on node3" % rel)
    expect(usage(c, n3)[0] > quota, "node3 stays over its quota rather than evict them",
           "> %d" % quota, usage(c, n3))
    restart(n3)
    cleanup(c, counted + sorted(pulled))


# A host that writes three files and closes them together: their journal
# entries come within microseconds, so the agent reads them in one go and
# runs the big one alone first.  Contents from seeds, so the test knows them.
WRITER = """
import os, random, sys
fds = []
for path, seed, size in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    data = random.Random(int(seed)).randbytes(int(size))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    while data:
        data = data[os.write(fd, data):]
    fds.append(fd)
for fd in fds:
    os.close(fd)
"""
BIG = 9 << 20                   # over a batch's 8 MiB: replicated alone, first


def test_changed_copy_not_evicted(c):
    """Two pulled copies changed on node3 through the library, one of them
    to the size and mtime it was installed with, are the least recently
    read; their journal entries wait behind a big write whose pushes stall
    (node1 and node2 stopped) while node3 is over its quota: node3 evicts
    the next ones instead, and both changes reach the registry."""
    n1, n2, n3 = c.nodes
    restart(n3)
    files = random_files("mod", 8)
    rels = sorted(files)
    shared(c, files)
    pull(n3, files)
    recorded(c, n3, rels, 0)
    a, b, big = rels[0], rels[1], "mod/big.bin"
    set_atimes(n3, rels)                     # a, then b: the least recently read
    held, _ = usage(c, n3)
    # Within it until the big file is registered; then room for it, a, b
    # and 3 more pulled copies.
    quota = held - 8 * SIZE + BIG + 5 * SIZE + 2000 + SIZE // 2
    restart(n3, CS_CACHE_MAX=str(quota))
    want = {big: random.Random(1).randbytes(BIG), b: random.Random(2).randbytes(SIZE),
            a: random.Random(3).randbytes(SIZE + 2000)}
    for node in (n1, n2):
        node.serve.send_signal(signal.SIGSTOP)
    try:
        p = n3.run(["python3", "-c", WRITER,
                    os.path.join(n3.dir, big), "1", str(BIG),
                    os.path.join(n3.dir, b), "2", str(SIZE),
                    os.path.join(n3.dir, a), "3", str(SIZE + 2000)])
        expect(p.returncode == 0, "node3 writes mod/big.bin, changes a and b", 0, p.stderr)
        # b as it was installed, but for its bytes (as a tar or cp -p would).
        path = os.path.join(n3.dir, b)
        os.utime(path, ns=(os.stat(path).st_atime_ns, OLD_MTIME_NS))
        evicted, kept = rels[2:5], rels[5:]
        done = eventually(lambda: not any(r in rows(c, n3, "mod") for r in evicted) and
                          all(rows(c, n3, "mod").get(r, (0, 0)) == (1, 2) for r in (a, b)), 90)
        expect(done, "node3 evicts the 3 next least recently read and registers both changes",
               {a: (1, 2), b: (1, 2)}, rows(c, n3, "mod"))
    finally:
        for node in (n1, n2):
            node.serve.send_signal(signal.SIGCONT)
    for rel in (a, b):
        expect(file_sha(os.path.join(n3.dir, rel)) == sha(want[rel]),
               "node3 still has its change of %s" % rel)
        rec = record(c, rel)
        expect(rec and rec["sha"] == sha(want[rel]), "the registry has node3's change of %s"
               % rel, sha(want[rel]), rec)
    got = rows(c, n3, "mod")
    expect(all(r in got and on_disk(n3, r) for r in kept), "the 3 read most recently stay",
           kept, sorted(got))
    expect(not any(on_disk(n3, r) for r in evicted), "the evicted ones left node3's disk")
    restart(n3)
    cleanup(c, rels + [big])


TESTS = [
    test_cache_max_values,
    test_pulled_copies_evicted_least_recently_used,
    test_counted_copies_never_evicted,
    test_changed_copy_not_evicted,
]


def main():
    # Background repair off: it makes a pulled copy count when it finds a
    # file short of copies, and a loaded run once made node3's pulled
    # copies count before the test looked.  The quota is what is tested.
    return run(TESTS, Cluster(nodes=3, nginx=False, extra_env={"CS_REPLICAS": str(REPLICAS),
                                                               "CS_REPAIR_RATE": "off"},
                              log_level=os.environ.get("CS_TEST_LOG", "warn")))


if __name__ == "__main__":
    sys.exit(main())
