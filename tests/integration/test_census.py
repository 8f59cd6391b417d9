"""test_census.py - `cs-replicate status` from the census, as an operator
sees it: the agents count the files in the background (the lowest-numbered
node that is up and active walks them), and status shows those counts when
counting exactly would take longer than CS_STATUS_EXACT_MS (0: always).
The census's numbers equal the exact ones once the cluster is at rest,
after writes, a dead node (the walker itself, so another takes over) and a
repair; status says which numbers it shows and how old they are; without a
census and without an exact count it exits 1 and says why.

Real memcached, MariaDB, three nodes with cs-replicate serve, CS_REPLICAS=2,
CS_DOWN_AFTER=4 s, CS_REPAIR_RATE=off (only the repair the test asks for:
a background repair would put back what a dead node held before a census
walk saw it short), CS_VERIFY_RATE=off (the files the last test registers
with plain SQL are on no disk).  Prints TAP-style lines and ends with "N passed, N
failed".
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, as_web_user  # noqa: E402
from tap import expect, run, eventually  # noqa: E402

REPLICAS = 2
WALK = 10               # CS_CENSUS_EVERY_MS: a walk at most this often
MANY = 25000            # files registered with SQL: over one range of a walk (20,000 ids)


def status(node, exact_ms=None, json_out=True):
    """(exit code, the JSON or the table, stderr) of status on node, with
    CS_STATUS_EXACT_MS=exact_ms when given."""
    extra = {} if exact_ms is None else {"CS_STATUS_EXACT_MS": str(exact_ms)}
    p = subprocess.run([node.cluster.bin, "status"] + (["--json"] if json_out else []),
                       env=node.env(**extra), capture_output=True, text=True,
                       preexec_fn=as_web_user(), timeout=60)
    if not json_out:
        return p.returncode, p.stdout, p.stderr
    try:
        return p.returncode, json.loads(p.stdout), p.stderr
    except ValueError:
        raise AssertionError("status --json printed no JSON: %r %r" % (p.stdout, p.stderr))


def counts(st):
    """What the census must agree on: the files, and each node's copies."""
    return (st["files"], sorted((x["name"], x["files"], x["bytes"], x["pinned"])
                                for x in st["nodes"]))


def agree(node):
    """The census's counts and the exact ones, when equal (else None)."""
    _, exact, _ = status(node)
    _, census, _ = status(node, exact_ms=0)
    if exact.get("counted") != "exact" or census.get("counted") != "census":
        return None
    return (exact, census) if counts(exact) == counts(census) else None


def write_many(node, prefix, n, size=2000):
    stage = tempfile.mkdtemp(prefix="cs-stage.")
    os.chmod(stage, 0o755)
    os.makedirs(os.path.join(stage, prefix))
    for i in range(n):
        with open(os.path.join(stage, prefix, "f%03d.bin" % i), "wb") as f:
            f.write((("%s/%d " % (prefix, i)) * (size // 6)).encode()[:size + i])
    p = node.copy_in(stage, prefix)
    expect(p.returncode == 0, "cp under the library", 0, p.stderr)


def settled(c, n):
    """n live files, each with R pinned current copies (status alone cannot
    tell a file whose journal line is not read yet)."""
    out = c.sql(db="cs", statement="SELECT COUNT(*) FROM (SELECT f.id FROM files f JOIN replicas r"
                " ON r.file_id=f.id AND r.version=f.version AND r.stale=0 AND r.pinned=1"
                " WHERE f.deleted=0 GROUP BY f.id HAVING COUNT(*) >= %d) x" % REPLICAS).stdout.split()
    return int(out[-1]) == n


def test_census_equals_exact_after_writes(c):
    n1, n2, n3 = c.nodes
    write_many(n1, "a", 30)
    write_many(n2, "b", 30)
    expect(eventually(lambda: settled(c, 60), 30), "60 files with R copies")
    got = eventually(lambda: agree(n3), 3 * WALK)
    expect(got, "the census equals the exact count after writes", None, got)
    exact, census = got
    expect(census["healthy"] and census["files"]["live"] == 60 and
           census["files"]["under_replicated"] == 0, "healthy from the census", None, census)
    expect(isinstance(census["census_age"], float) and 0 <= census["census_age"] < 3 * WALK and
           census["census_by"] == "node1", "its age, and the lowest node counted", None,
           (census["census_age"], census["census_by"]))
    rc, table, _ = status(n3, exact_ms=0, json_out=False)
    expect(rc == 0 and "ago by node1 (census; CS_STATUS_EXACT_MS=0)" in table,
           "the table says the counts are the census's", None, table)
    rc, table, _ = status(n3, json_out=False)
    expect(rc == 0 and "counted just now (exact)" in table, "... or exact", None, table)


def test_dead_walker_seen_then_repaired(c):
    """node1, the walker, dies: its files are short of copies, which the
    census shows within a walk of node2 taking over; after a repair (and
    node1's return) healthy again, and equal to the exact count."""
    n1, n2 = c.nodes[0], c.nodes[1]
    n1.stop_serve()

    def short():
        rc, st, err = status(n2, exact_ms=0)
        return (rc, st, err) if (rc == 1 and st["files"]["under_replicated"] > 0 and
                                 st["census_by"] == "node2") else None
    got = eventually(short, 4 + 3 * WALK)
    expect(got, "census-only status reports files short of copies, counted by node2", None,
           status(n2, exact_ms=0))
    if got:
        rc, st, err = got
        expect(any("fewer than 2 copies that count (census)" in r for r in st["reasons"]) and
               "node1 is down" in err, "the reasons say so, and where the count is from", None,
               (st["reasons"], err))
    got = eventually(lambda: agree(n2), 2 * WALK)
    expect(got, "the census equals the exact count with node1 down", None, got)
    p = n2.cs("repair", "--timeout", "60", check=False, timeout=90)
    expect(p.returncode == 0, "repair", 0, (p.returncode, p.stdout, p.stderr))
    n1.start_serve()
    expect(eventually(lambda: status(n2, exact_ms=0)[0] == 0, 4 + 3 * WALK),
           "census-only status healthy after the repair", 0, status(n2, exact_ms=0))
    got = eventually(lambda: agree(n2), 3 * WALK)
    expect(got, "the census equals the exact count after the repair", None, got)


def test_no_census_no_exact(c):
    """No census published (none of the agents runs to walk) and the exact
    count disabled: exit 1, saying why; the census is back within a walk of
    an agent's start."""
    for node in c.nodes:
        node.stop_serve()
    c.sql(db="cs", statement="DELETE FROM census")
    n1 = c.nodes[0]
    rc, st, err = status(n1, exact_ms=0)
    expect(rc == 1 and not st["healthy"] and "no census" in st["reasons"][0] and
           "no census of the files yet" in err and "CS_STATUS_EXACT_MS=0" in err,
           "exit 1 with the reason", 1, (rc, st, err))
    rc, table, err = status(n1, exact_ms=0, json_out=False)
    expect(rc == 1 and "no census" in err and "unreachable" not in err, "the same for the table",
           1, (rc, table, err))
    for node in c.nodes:
        node.start_serve()
    expect(eventually(lambda: status(n1, exact_ms=0)[0] == 0, 10),
           "a census again soon after the agents start", 0, status(n1, exact_ms=0))


def test_many_files_in_ranges_and_a_count_too_slow(c):
    """25,000 more files, registered with plain SQL (held by node2 and
    node3): the census walks them in more than one range and still equals the
    exact count; an exact count stopped at CS_STATUS_EXACT_MS is no
    registry failure: status shows the census and says why."""
    ns = c.namespace
    # In one transaction: a walk sees the files with their copies or not
    # at all.
    c.sql(db="cs", statement="START TRANSACTION; INSERT INTO files (path_hash, namespace, path,"
          " version, size, mtime_ns, sha256) SELECT UNHEX(SHA2(CONCAT('%s', 0x00, 'many/f', seq),"
          " 256)), '%s', CONCAT('many/f', seq), 1, 100, 0, UNHEX(SHA2(seq, 256)) FROM"
          " seq_1_to_%d; INSERT INTO replicas (file_id, node_id, version, size) SELECT f.id, n.id,"
          " 1, 100 FROM files f JOIN nodes n ON n.name IN ('node2', 'node3')"
          " WHERE f.path LIKE 'many/%%'; COMMIT" % (ns, ns, MANY))
    n1 = c.nodes[0]
    # Counted by the mariadb client (no time limit): status itself may
    # rightly not count exactly here, on a loaded machine.
    held = c.sql(db="cs", statement="SELECT n.name, COUNT(f.id), COALESCE(SUM(f.size), 0),"
                 " COALESCE(SUM(r.pinned), 0) FROM nodes n LEFT JOIN replicas r ON r.node_id=n.id"
                 " AND r.stale=0 LEFT JOIN files f ON f.id=r.file_id AND f.version=r.version"
                 " AND f.deleted=0 GROUP BY n.name").stdout.split("\n")
    live = int(c.sql(db="cs", statement="SELECT COUNT(*) FROM files WHERE deleted=0").stdout)
    expect(live >= MANY, "registered", MANY, live)
    want = ({"live": live, "under_replicated": 0, "no_live_copy": 0},
            sorted((x[0], int(x[1]), int(x[2]), int(x[3]))
                   for x in (line.split("\t") for line in held if line)))

    def census():
        rc, st, _ = status(n1, exact_ms=0)
        return st if rc == 0 and counts(st) == want else None
    got = eventually(census, 6 * WALK)
    expect(got, "the census counts every file, each node's copies as the registry has them",
           want, counts(status(n1, exact_ms=0)[1]))
    c.sql(db="cs", statement="UPDATE census SET work_ms=0")   # else not even tried
    rc, st, err = status(n1, exact_ms=1)
    expect(rc == 0 and st["counted"] == "census" and st["healthy"], "census when exact is too slow",
           None, (rc, st, err))
    rc, table, err = status(n1, exact_ms=1, json_out=False)
    expect(rc == 0 and "counting exactly took over CS_STATUS_EXACT_MS" in table and
           "MySQL" not in err and "unreachable" not in err, "... says why, and no error", None,
           (rc, table, err))
    c.sql(db="cs", statement="UPDATE census SET work_ms=5000")
    rc, table, err = status(n1, json_out=False)
    expect(rc == 0 and "the census's statements took 5000 ms" in table,
           "not even tried when the census says it would take too long", None, (rc, table, err))


if __name__ == "__main__":
    sys.exit(run([test_census_equals_exact_after_writes,
                  test_dead_walker_seen_then_repaired,
                  test_no_census_no_exact,
                  test_many_files_in_ranges_and_a_count_too_slow],
                 Cluster(nodes=3, nginx=False, log_level="info",
                         extra_env={"CS_DOWN_AFTER": "4", "CS_REPLICAS": str(REPLICAS),
                                    "CS_REPAIR_RATE": "off", "CS_VERIFY_RATE": "off"})))
