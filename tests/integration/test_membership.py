"""test_membership.py - nodes come, go and fail, as an operator sees it:
`cs-replicate status` says what is wrong and exits 1 while it is; the
agents bring a dead node's files back to CS_REPLICAS copies on their own;
`cs-replicate repair` does it now and says what it could not; `node drain`
moves a node's copies away while it keeps serving, `node remove` loses
nothing after it and refuses before it, `node undrain` brings it back.

Real memcached, MariaDB, four nodes each with cs-replicate serve and nginx
under the library, CS_REPLICAS=2, CS_DOWN_AFTER=4 s (heartbeats every
2 s: a loaded machine running the sanitizer build delays one by over a
second now and then, which 3 s took for a dead node).  The tests run in
order on one cluster (a node killed in one stays down for the next until
restarted).  Prints TAP-style lines and ends with "N passed, N failed".
"""
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402
from tap import expect, run, eventually, sha, file_sha  # noqa: E402

REPLICAS = 2
FILES = {}      # rel -> bytes, every file the tests wrote


def status(node):
    p = node.cs("status", "--json", check=False)
    try:
        return p.returncode, json.loads(p.stdout), p.stderr
    except ValueError:
        raise AssertionError("status --json printed no JSON: %r %r" % (p.stdout, p.stderr))


def node_of(st, name):
    return [x for x in st["nodes"] if x["name"] == name][0]


def write_many(node, prefix, n, size=3000):
    """n files under prefix/, written on node through the library (cp)."""
    stage = tempfile.mkdtemp(prefix="cs-stage.")
    os.chmod(stage, 0o755)
    os.makedirs(os.path.join(stage, prefix))
    for i in range(n):
        data = (("%s/%d " % (prefix, i)) * (size // 8 + 1)).encode()[:size + i]
        rel = "%s/f%03d.bin" % (prefix, i)
        with open(os.path.join(stage, rel), "wb") as f:
            f.write(data)
        FILES[rel] = data
    p = node.copy_in(stage, prefix)
    expect(p.returncode == 0, "cp under the library", 0, p.stderr)


def counting(c, rel):
    """Copies of rel that count: pinned, current, on up active nodes."""
    out = c.sql(db="cs", statement="SELECT COUNT(*) FROM files f JOIN replicas r ON r.file_id=f.id AND"
                " r.version=f.version AND r.stale=0 AND r.pinned=1 JOIN nodes n ON"
                " n.id=r.node_id AND n.state='active' AND n.heartbeat_at > NOW(3) -"
                " INTERVAL 4 SECOND WHERE f.path=X'%s' AND f.deleted=0"
                % rel.encode().hex()).stdout.split()
    return int(out[-1])


def replicated(c, prefix, n):
    """Every one of prefix/'s n files registered with R counting copies.
    status alone cannot say so: a file whose journal line the writer's
    agent has not read yet is in no count, and the backlog it reports is
    as old as its last heartbeat."""
    out = c.sql(db="cs", statement="SELECT COUNT(*) FROM (SELECT f.id FROM files f JOIN replicas r"
                " ON r.file_id=f.id AND r.version=f.version AND r.stale=0 AND r.pinned=1"
                " WHERE f.path LIKE '%s/%%' AND f.deleted=0 GROUP BY f.id HAVING COUNT(*) >= %d) x"
                % (prefix, REPLICAS)).stdout.split()
    return int(out[-1]) == n


def healthy(node):
    rc, st, _ = status(node)
    return rc == 0 and st["healthy"] and st["files"]["under_replicated"] == 0


def test_status_healthy_and_complete(c):
    n1, n2 = c.nodes[0], c.nodes[1]
    write_many(n1, "a", 40)
    write_many(n2, "b", 40)
    expect(eventually(lambda: healthy(n1), 30), "status healthy once written")
    rc, st, err = status(n3 := c.nodes[2])
    expect(rc == 0 and st["healthy"] and st["reasons"] == [], "healthy, no reasons", 0, (rc, st))
    expect(st["replicas"] == REPLICAS and st["files"]["live"] == 80 and
           st["files"]["no_live_copy"] == 0, "counts", 80, st["files"])
    names = sorted(x["name"] for x in st["nodes"])
    expect(names == ["node1", "node2", "node3", "node4"], "every node listed", None, names)
    total = 0
    for x in st["nodes"]:
        for k in ("id", "state", "up", "zone", "url", "heartbeat_age", "files", "bytes",
                  "pinned", "backlog"):
            expect(k in x, "node field " + k, k, x)
        expect(x["state"] == "active" and x["up"], "active and up", None, x)
        total += x["pinned"]
    expect(total >= 80 * REPLICAS, "at least R counting copies of each file", 160, total)
    p = n3.cs("status", check=False)
    expect(p.returncode == 0 and "healthy" in p.stdout and "node4" in p.stdout,
           "human table", None, p.stdout)


def test_registry_outage_copies_nothing(c):
    """While MySQL is down no heartbeat is recorded: when it is back every
    node looks down for a moment.  Repair must not take that for a dead
    cluster and copy everything."""
    n1 = c.nodes[0]
    rows = lambda: int(c.sql(db="cs", statement="SELECT COUNT(*) FROM replicas").stdout.split()[-1])
    before = rows()
    c.stop_mariadb()
    time.sleep(6)               # over CS_DOWN_AFTER (4 s)
    c.start_mariadb()
    # Without the wait below, repair copies within a pass (5 s) and a
    # breaker's back-off (up to 8 s) of MySQL's return; with it, it waits
    # CS_DOWN_AFTER + 13 s, when every node has heartbeated again.
    time.sleep(15)
    expect(rows() == before, "no copy made by the outage", before, rows())
    expect(eventually(lambda: healthy(n1), 20), "healthy after it")


def test_dead_node_is_repaired_without_an_operator(c):
    n1, n4 = c.nodes[0], c.nodes[3]
    held = int(c.sql(db="cs", statement="SELECT COUNT(*) FROM replicas WHERE node_id=(SELECT id FROM nodes"
                     " WHERE name='node4')").stdout.split()[-1])
    expect(held > 0, "node4 holds copies", ">0", held)
    n4.stop_nginx()
    n4.stop_serve()
    # Down after CS_DOWN_AFTER; its copies stop counting; status says so.
    def down():
        rc, st, err = status(n1)
        return (rc, st, err) if rc == 1 and not node_of(st, "node4")["up"] else None
    got = eventually(down, 15)
    expect(got, "status exits 1 with node4 down")
    rc, st, err = got
    expect(any("node4" in r and "down" in r for r in st["reasons"]) and "node4" in err,
           "the reason names node4", None, (st["reasons"], err))
    # The agents' own repair restores every file's copies.
    expect(eventually(lambda: healthy(n1) is False and
                      status(n1)[1]["files"]["under_replicated"] == 0, 60),
           "under_replicated back to 0 with no command", 0, status(n1)[1]["files"])
    short = [rel for rel in FILES if counting(c, rel) < REPLICAS]
    expect(not short, "every file has R counting copies on up nodes", [], short[:5])
    for node in c.nodes[:3]:
        for rel, data in FILES.items():
            h = file_sha(os.path.join(node.dir, rel))
            expect(h is None or h == sha(data), "no wrong bytes on " + node.name, sha(data), h)
    # Nothing left for an operator's repair: exit 0.
    p = n1.cs("repair", check=False, timeout=60)
    expect(p.returncode == 0 and "0 now" in p.stdout, "repair finds nothing", 0,
           (p.returncode, p.stdout, p.stderr))


def test_repair_says_what_it_cannot(c):
    n1, n2, n3 = c.nodes[0], c.nodes[1], c.nodes[2]
    # Only node1 up: nowhere to make a second copy.
    n2.stop_serve()
    n3.stop_serve()
    try:
        eventually(lambda: not node_of(status(n1)[1], "node3")["up"], 15)
        p = n1.cs("repair", "--timeout", "30", check=False, timeout=60)
        expect(p.returncode == 1 and "could not be repaired" in p.stderr,
               "repair exits 1 and says so", 1, (p.returncode, p.stdout, p.stderr))
    finally:
        n2.start_serve()
        n3.start_serve()
    expect(eventually(lambda: status(n1)[1]["files"]["under_replicated"] == 0, 60),
           "repaired once they are back", 0, status(n1)[1]["files"])


def test_repair_now_beats_the_background_rate(c):
    n1, n4 = c.nodes[0], c.nodes[3]
    if n4.serve is None:        # down since the test before (unless it failed early)
        n4.start_serve()
        n4.start_nginx()
    write_many(n4, "d", 30, size=20000)
    expect(eventually(lambda: replicated(c, "d", 30) and healthy(n1), 30), "healthy again")
    for node in c.nodes[:3]:    # background repair at 4 KiB/s: a crawl
        node.stop_serve()
        node.start_serve(CS_REPAIR_RATE="4K")
    n4.stop_nginx()
    n4.stop_serve()
    eventually(lambda: not node_of(status(n1)[1], "node4")["up"], 15)
    before = status(n1)[1]["files"]["under_replicated"]
    p = n1.cs("repair", "--timeout", "60", check=False, timeout=90)
    expect(p.returncode == 0, "repair at full speed completes", 0,
           (p.returncode, p.stdout, p.stderr))
    # status counts copies on nodes whose heartbeat is fresh: a loaded
    # machine may show one late for a moment.
    expect(eventually(lambda: status(n1)[1]["files"]["under_replicated"] == 0, 10),
           "nothing short after it", before, status(n1)[1]["files"])
    for node in c.nodes[:3]:
        node.stop_serve()
        node.start_serve()


def test_pulled_copy_is_made_to_count(c):
    """A copy a node merely pulled is made to count when a holder dies: no
    transfer, the same inode, its record pinned."""
    n1, n2, n3, n4 = c.nodes
    for n in c.nodes:               # the test before left node4 down
        if n.serve is None:
            n.start_serve()
            n.start_nginx()
    expect(eventually(lambda: healthy(n1), 30), "healthy to begin with")
    n1.mkdir("p")
    data = os.urandom(50000)
    p = n1.run(["sh", "-c", 'cat > "$1"', "sh", os.path.join(n1.dir, "p/one.bin")], input=data)
    expect(p.returncode == 0, "written", 0, p.stderr)
    FILES["p/one.bin"] = data
    have = lambda: [n for n in c.nodes if file_sha(os.path.join(n.dir, "p/one.bin"))]
    expect(eventually(lambda: len(have()) == 2, 20), "two copies")
    other = [n for n in have() if n is not n1][0]
    reader = [n for n in c.nodes if n not in have()][0]
    st, body = reader.get("/p/one.bin")
    expect(st == 200 and body == data, "pulled by " + reader.name, 200, st)
    ino = os.stat(os.path.join(reader.dir, "p/one.bin")).st_ino
    pinned = lambda: c.sql(db="cs", statement="SELECT r.pinned FROM replicas r JOIN files f ON"
                           " f.id=r.file_id JOIN nodes n ON n.id=r.node_id WHERE n.name='%s' AND"
                           " f.path=X'%s'" % (reader.name, b"p/one.bin".hex())).stdout.split()
    expect(eventually(lambda: pinned() == ["0"], 10), "recorded as pulled (not counting)",
           ["0"], pinned())
    other.stop_nginx()
    other.stop_serve()
    try:
        expect(eventually(lambda: pinned() == ["1"], 30), "made to count once its holder died",
               ["1"], pinned())
        expect(os.stat(os.path.join(reader.dir, "p/one.bin")).st_ino == ino,
               "the same copy (no transfer)")
        expect(counting(c, "p/one.bin") >= REPLICAS, "two counting copies", REPLICAS,
               counting(c, "p/one.bin"))
    finally:
        other.start_serve()
        other.start_nginx()
    expect(eventually(lambda: healthy(n1), 30), "healthy again")


def test_drain_under_load_then_remove(c):
    n1, n2, n3 = c.nodes[0], c.nodes[1], c.nodes[2]
    # Refused while node2 holds copies nothing else makes up for.
    p = n1.cs("node", "remove", "node2", check=False)
    expect(p.returncode == 1 and "drain" in p.stderr, "remove refused before a drain", 1,
           (p.returncode, p.stdout, p.stderr))
    errors, done = [], threading.Event()
    rels = sorted(FILES)

    def reader(node):
        i = 0
        while not done.is_set():
            rel = rels[i % len(rels)]
            st, body = node.get("/" + rel)
            if st != 200 or body != FILES[rel]:
                errors.append((node.name, rel, st))
            i += 1
    threads = [threading.Thread(target=reader, args=(n,)) for n in (n1, n3)]
    for t in threads:
        t.start()
    try:
        p = n1.cs("node", "drain", "node2", "--wait", "--timeout", "60", check=False,
                  timeout=90)
    finally:
        done.set()
        for t in threads:
            t.join()
    expect(p.returncode == 0 and "drained" in p.stdout, "drain --wait ends drained", 0,
           (p.returncode, p.stdout, p.stderr))
    expect(not errors, "no failed read on the other nodes during the drain", [], errors[:5])
    st = status(n1)[1]
    expect(node_of(st, "node2")["state"] == "draining", "status shows draining", None, st)
    p = n1.cs("node", "remove", "node2", check=False)
    expect(p.returncode == 0, "remove after the drain", 0, (p.returncode, p.stdout, p.stderr))
    rows = c.sql(db="cs", statement="SELECT COUNT(*) FROM replicas WHERE node_id=(SELECT id FROM nodes WHERE"
                 " name='node2')").stdout.split()[-1]
    expect(rows == "0", "its holder records are gone", "0", rows)
    rc, st, err = status(n1)
    expect(node_of(st, "node2")["state"] == "removed" and st["files"]["under_replicated"] == 0
           and st["files"]["no_live_copy"] == 0, "removed, nothing short", None, st)
    for rel in rels[::7]:
        s3, body = n3.get("/" + rel)
        expect(s3 == 200 and body == FILES[rel], "still served after the removal", 200, s3)
    p = n1.cs("node", "undrain", "node2", check=False)
    expect(p.returncode == 0 and "verify" in p.stdout, "undrain brings it back", 0,
           (p.returncode, p.stdout))
    expect(node_of(status(n1)[1], "node2")["state"] == "active", "active again")
    p = n1.cs("node", "drain", "nosuchnode", check=False)
    expect(p.returncode == 1 and "no node named" in p.stderr, "unknown node", 1, p.stderr)
    p = n1.cs("node", "frobnicate", "node2", check=False)
    expect(p.returncode == 2, "bad usage exits 2", 2, p.returncode)


if __name__ == "__main__":
    sys.exit(run([test_status_healthy_and_complete,
                  test_registry_outage_copies_nothing,
                  test_dead_node_is_repaired_without_an_operator,
                  test_repair_says_what_it_cannot,
                  test_repair_now_beats_the_background_rate,
                  test_pulled_copy_is_made_to_count,
                  test_drain_under_load_then_remove],
                 Cluster(nodes=4, log_level="info",
                         extra_env={"CS_DOWN_AFTER": "4", "CS_REPLICAS": str(REPLICAS)})))
