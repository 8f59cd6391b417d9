#!/usr/bin/env python3
"""test_ten.py - ten nodes in two zones a distance apart, each node in a
network namespace of its own (netcluster.py): nodes 1-5 in zone a, 6-10
in zone b; a round trip takes 1 ms within a zone and 20 ms between the
zones; the registry is 1 ms from zone a and 20 ms from zone b.
CS_REPLICAS=2, CS_DOWN_AFTER=3.  The bounded form of bench/run-ten, for
`make test`:

  * status --json lists the ten nodes, up, in their zones;
  * files written in zone a get a copy in zone b (pushes go to the zone
    with fewer copies) and are read with the right bytes on the nodes of
    zone b that do not hold them;
  * a node reading a file it does not hold fetches it from a holder in
    its own zone (the holders' /metrics count the GETs they answered);
  * a node of zone b killed (SIGKILL): status shows it down, and the
    agents' repair gives every file its copies back.

    python3 tests/netcluster/test_ten.py        (as root; after make)

prints "ok N - ..." / "not ok N - ..." lines and ends with "N passed,
N failed".
"""
import concurrent.futures
import importlib.util
import os
import random
import re
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netcluster as nc  # noqa: E402

# The membership scenarios' checks (Tap, status_check, ...), loaded by path:
# tests/integration, on the path now, has a test_membership.py of its own.
_spec = importlib.util.spec_from_file_location("netcluster_membership",
                                               os.path.join(HERE, "test_membership.py"))
tm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tm)

ZONES = ["a"] * 5 + ["b"] * 5
LATENCY = (1.0, 20.0, {"a": 1.0, "b": 20.0})    # round trips, ms
FILES_PER_WRITER = 8
GETS = re.compile(r'^cs_http_requests_total\{route="files",method="GET",code="2xx"\} (\d+)',
                  re.M)


def file_gets(node):
    """GETs of files node's agent answered 2xx, from its /metrics."""
    with urllib.request.urlopen("http://%s:%d/metrics" % (node.addr, node.serve_port),
                                timeout=10) as r:
        m = GETS.search(r.read().decode())
    return int(m.group(1)) if m else 0


def holders(c, rel):
    """Names of the nodes with a current copy of rel that counts (SQL)."""
    return {r[0] for r in c.query(
        "SELECT n.name FROM files f JOIN replicas r ON r.file_id=f.id AND r.version=f.version"
        " JOIN nodes n ON n.id=r.node_id WHERE f.path='%s' AND f.deleted=0 AND r.stale=0"
        " AND r.pinned=1" % rel)}


def zone_of(c, name):
    return c.node(int(name[4:])).zone


def run(t, rng):
    with tm.cluster(t, nodes=10, replicas=2, zones=ZONES, latency=LATENCY, down_after=3,
                    nginx_workers=1) as c:
        a, b = c.node(1), c.node(6)
        near = a.rtt(c.node(2).addr, nc.AGENT_PORT, 5)
        far = a.rtt(b.addr, nc.AGENT_PORT, 5)
        reg = b.rtt(c.host, c.mysql_port, 5)
        t.ok(near[2] < 10 and far[2] >= 20 and reg[2] >= 20,
             "round trips (TCP connect, median of 5): node1-node2 (zone a) %.1f ms, node1-node6"
             " (a-b) %.1f ms, node6 to MariaDB %.1f ms" % (near[2], far[2], reg[2]),
             "< 10, >= 20, >= 20", (near, far, reg))
        tm.status_check(c, t, "status --json: ten nodes, each up, active and in its zone"
                        " (1-5 a, 6-10 b); healthy, exit 0",
                        lambda s: (s.rc == 0 and s.data.get("healthy") is True
                                   and len(s.data.get("nodes", [])) == 10
                                   and all((s.node("node%d" % i) or {}).get("up") is True
                                           and (s.node("node%d" % i) or {}).get("zone")
                                           == ZONES[i - 1] for i in range(1, 11))),
                        timeout=20)

        files = tm.Files()
        plan = {i: [("z/w%d-%d.bin" % (i, k), "z/w%d-%d.bin@1" % (i, k),
                     rng.randint(2000, 60000)) for k in range(FILES_PER_WRITER)]
                for i in range(1, 6)}
        with concurrent.futures.ThreadPoolExecutor(len(plan)) as ex:
            acked = sum(len(x) for x in ex.map(lambda i: c.node(i).write(plan[i]), plan))
        for vs in plan.values():
            for rel, vid, size in vs:
                files.set(rel, vid, size)
        t.must(acked == len(files.v), "%d files written through the library on the nodes of"
               " zone a" % len(files.v), len(files.v), acked)
        tm.wait_replicated(c, t, files, timeout=60)
        where = {rel: holders(c, rel) for rel in files.v}
        one_sided = [rel for rel, h in where.items()
                     if {zone_of(c, n) for n in h} != {"a", "b"}]
        t.ok(not one_sided, "each has its two copies in both zones: the writer's, and one"
             " pushed to zone b (SQL)", "a and b", [(r, where[r]) for r in one_sided[:5]])

        # Each file read once, on a node that does not hold it: half of
        # them in zone b, half in zone a.  A holder in the reader's zone
        # must answer: the other zone's agents answer no GET meanwhile.
        rels = sorted(files.v)
        rng.shuffle(rels)
        before = {n.name: file_gets(n) for n in c.nodes}
        plan, bad = {"a": [], "b": []}, []
        for k, rel in enumerate(rels):
            zone = "b" if k % 2 == 0 else "a"
            readers = [n for n in c.nodes if n.zone == zone and n.name not in where[rel]]
            reader = readers[k % len(readers)]
            status, body = tm.get(reader, rel)
            plan[zone].append(rel)
            if status != 200 or not files.good(rel, body):
                bad.append("%s %s: HTTP %s" % (reader.name, rel, status))
        gained = {n.name: file_gets(n) - before[n.name] for n in c.nodes}
        t.ok(not bad, "%d files of zone a read with the right bytes on zone b's nodes that do"
             " not hold them, %d on zone a's (through their nginx)"
             % (len(plan["b"]), len(plan["a"])), "all 200", bad[:5])
        by_zone = {z: sum(v for k, v in gained.items() if zone_of(c, k) == z) for z in "ab"}
        t.ok(by_zone == {"a": len(plan["a"]), "b": len(plan["b"])},
             "each fetched from a holder in the reader's zone: zone a's agents answered %d"
             " file GETs, zone b's %d (their /metrics)" % (by_zone["a"], by_zone["b"]),
             {"a": len(plan["a"]), "b": len(plan["b"])}, gained)

        # A node of zone b dies; its copies are made again.
        victim = max((n for n in c.nodes if n.zone == "b"),
                     key=lambda n: sum(n.name in h for h in where.values()))
        held = sum(victim.name in h for h in where.values())
        t.note("%s holds %d of the files' counting copies; killing its agent and nginx"
               " (SIGKILL)" % (victim.name, held))
        victim.kill()
        killed = time.monotonic()
        tm.status_check(c, t, "status --json: %s down, unhealthy, exit 1" % victim.name,
                        lambda s: ((s.node(victim.name) or {}).get("up") is False
                                   and s.data.get("healthy") is False and s.rc == 1),
                        timeout=20)
        tm.status_check(c, t, "status --json: every file has its 2 copies again (repair by"
                        " the agents), %s still down" % victim.name,
                        lambda s: (s.files("under_replicated") == 0
                                   and s.files("no_live_copy") == 0
                                   and s.files("live") == len(files.v)
                                   and (s.node(victim.name) or {}).get("up") is False),
                        timeout=60)
        t.note("repaired %.1f s after the kill" % (time.monotonic() - killed))
        under = c.under_replicated()
        t.ok(under[0] == 0, "SQL agrees: no live file under 2 counting copies", 0, under)
        reader = next(n for n in c.nodes if n.zone == "b" and n is not victim)
        tm.read_all(c, t, files, [reader.index], "after the repair, on %s (zone b)"
                    % reader.name)


def main():
    for name in nc.netmod.sweep_dead():
        print("# removed %s, left by an earlier run" % name)
    t = tm.Tap()
    t0 = time.monotonic()
    try:
        run(t, random.Random(13))
    except tm.Abort:
        t.note("stopped: a step it needs failed")
    except Exception:
        import traceback
        t.ok(False, "ended early", "no exception", traceback.format_exc())
    t.note("took %.0f s" % (time.monotonic() - t0))
    if t.skipped:
        t.note("%d checks skipped: %s" % (t.skipped, tm.NO_JSON))
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
