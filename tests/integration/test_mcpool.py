"""test_mcpool.py - CS_MEMCACHED naming three servers: the keys spread over
all three (ketama), and losing one costs its share of keys and nothing
else.  Killed with SIGKILL, the other servers keep their keys and stay
hits, its keys go to MySQL, no read fails and none waits long; started
again on the same port, it is used again with no agent restarted; stopped
(SIGSTOP: no answer at all), only the reads already asking it wait one
timeout.  A bad server list is one line in the log, and the agent goes on
without memcached.

Real memcached (three), MariaDB, four nodes with their agents (no web
server), CS_REPLICAS=1 (no pushes: nothing drops records behind the
test's back).  Node 1 holds the files; the others read them under the
library.  What memcached served is read from each server's own `stats`
and `lru_crawler metadump`, what MySQL was asked from its general log.
Prints TAP-style lines and ends with "N passed, N failed".
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, free_port, wait_for  # noqa: E402
from tap import expect, run, eventually, mkdir_web, sha  # noqa: E402

TIMEOUT = 0.25          # agent/mcache.c: every memcached call's
VICTIM = 1              # the server killed and started again
STOPPED = 2             # the server stopped with SIGSTOP

# A host program: read each path given on stdin (a JSON list) in threads;
# [rel, sha256 or "error: ...", seconds] for each on stdout.
READER = r'''
import concurrent.futures, hashlib, json, os, sys, time
d, threads = sys.argv[1], int(sys.argv[2])
def one(rel):
    t = time.monotonic()
    try:
        with open(os.path.join(d, rel), "rb") as f:
            h = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        h = "error: %s" % e
    return [rel, h, time.monotonic() - t]
with concurrent.futures.ThreadPoolExecutor(threads) as ex:
    json.dump(list(ex.map(one, json.load(sys.stdin))), sys.stdout)
'''


class PoolCluster(Cluster):
    """A Cluster with two more memcached servers, and every agent given
    all three."""

    def __init__(self, **kw):
        self.more_ports = [free_port(), free_port()]
        super().__init__(node_env=lambda node: {"CS_MEMCACHED": self.mc_list()}, **kw)

    def mc_ports(self):
        return [self.memcached_port] + self.more_ports

    def mc_list(self):
        return ",".join("%s:%d" % (self.host, p) for p in self.mc_ports())

    def start_memcached(self):
        super().start_memcached()
        for i in (1, 2):
            self.start_mc(i)

    def start_mc(self, i):
        """Server i (0-2) again, on its port."""
        if i == 0:
            return super().start_memcached()
        port = self.more_ports[i - 1]
        log = open(os.path.join(self.tmp, "memcached%d.log" % i), "ab")
        self.procs["memcached%d" % i] = subprocess.Popen(
            ["memcached", "-l", self.host, "-p", str(port), "-U", "0", "-u", "nobody",
             "-m", "64"], stdout=log, stderr=log)
        wait_for(lambda: socket.create_connection((self.host, port), 1).close() or True,
                 10, "memcached%d" % i)

    def mc_proc(self, i):
        return self.procs["memcached" if i == 0 else "memcached%d" % i]


def mc_command(c, i, cmd):
    """Server i's whole answer to one command line, up to END or OK."""
    with socket.create_connection((c.host, c.mc_ports()[i]), 5) as m:
        m.sendall(cmd.encode() + b"\r\n")
        data = b""
        while not re.search(rb"(^|\n)(END|OK|RESET|ERROR[^\r]*)\r\n$", data):
            got = m.recv(65536)
            if not got:
                break
            data += got
    return data.decode(errors="replace")


def mc_stats(c, i):
    out = {}
    for line in mc_command(c, i, "stats").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT" and parts[2].isdigit():
            out[parts[1]] = int(parts[2])
    return out


def mc_keys(c, i):
    """The keys server i holds (without counting a get)."""
    keys = set()
    for line in mc_command(c, i, "lru_crawler metadump all").splitlines():
        m = re.match(r"key=(\S+)", line)
        if m:
            keys.add(urllib.parse.unquote(m.group(1)))
    return keys


def record_key(c, rel):
    """agent/record.c's key for (namespace, rel)."""
    return "cs1:" + hashlib.sha256(c.namespace.encode() + b"\0" + rel.encode()).hexdigest()


def read(node, rels, threads=4):
    """node's host reads rels: {rel: (sha or error, seconds)}."""
    mkdir_web(node, "pool")
    p = node.run(["python3", "-c", READER, node.dir, str(threads)],
                 input=json.dumps(rels).encode(), timeout=120)
    expect(p.returncode == 0, "the reader ran", 0, (p.returncode, p.stderr.decode()[-500:]))
    return {rel: (h, t) for rel, h, t in json.loads(p.stdout)}


def looked_up(c):
    """Paths the agents looked up in MySQL since the general log was
    started."""
    rows = c.sql("SELECT argument FROM mysql.general_log WHERE command_type='Query' AND"
                 " argument LIKE '%WHERE f.path_hash=%' AND argument NOT LIKE"
                 " '%general_log%'").stdout
    return {bytes.fromhex(h).decode() for h in re.findall(r"f\.path=X'([0-9a-fA-F]+)'", rows)}


def general_log(c, on):
    if on:
        c.sql("TRUNCATE TABLE mysql.general_log; SET GLOBAL log_output='TABLE';"
              " SET GLOBAL general_log=1")
    else:
        c.sql("SET GLOBAL general_log=0")


def log_lines(node, pattern):
    with open(os.path.join(node.home, "serve.log"), errors="replace") as f:
        return [line for line in f.read().splitlines() if re.search(pattern, line)]


def files(tag, n):
    return ["pool/%s%03d.txt" % (tag, i) for i in range(n)]


state = {}


# ---- tests -------------------------------------------------------------

def test_keys_spread_over_the_pool(c):
    """Lookups of 240 files are served by the three servers, each holding
    a share of the keys, and MySQL is not asked."""
    n1, n2, n3 = c.nodes[:3]
    want = {}
    for tag, n in (("a", 240), ("c", 120), ("d", 120), ("e", 90), ("f", 60)):
        for rel in files(tag, n):
            data = ("%s\n" % rel).encode() * 40
            n1.put(rel, data)
            want[rel] = sha(data)
    n1.import_ns()
    state["want"] = want
    for i in range(3):
        mc_command(c, i, "flush_all")
    a = files("a", 240)
    got = read(n2, a)                  # misses everywhere: MySQL, then add
    expect(all(got[r][0] == want[r] for r in a), "node2 reads the 240 files right")
    where = {}
    for i in range(3):
        for key in mc_keys(c, i):
            where[key] = i
    owner = {rel: where.get(record_key(c, rel)) for rel in a}
    share = [sum(1 for rel in a if owner[rel] == i) for i in range(3)]
    expect(None not in owner.values(), "every file's record is on one server",
           0, sum(1 for v in owner.values() if v is None))
    expect(min(share) >= 240 * 0.15, "each of the three servers holds a share", ">= 36", share)
    state["owner"] = owner
    print("# records per server after 240 lookups: %s" % share)

    before = [mc_stats(c, i)["get_hits"] for i in range(3)]
    general_log(c, True)
    try:
        got = read(n3, a)
        asked = looked_up(c) & set(a)
    finally:
        general_log(c, False)
    hits = [mc_stats(c, i)["get_hits"] - before[i] for i in range(3)]
    expect(all(got[r][0] == want[r] for r in a), "node3 reads the 240 files right")
    expect(not asked, "node3 asked MySQL for none of them", 0, sorted(asked)[:5])
    expect(all(hits[i] >= share[i] for i in range(3)),
           "each server answered its share as hits", share, hits)
    print("# get_hits per server for node3's 240 lookups: %s" % hits)


def test_one_server_killed(c):
    """SIGKILL of one server: every read still works, the other two keep
    their keys and answer them as hits (MySQL is asked only for the dead
    one's), and no read waits long."""
    n4 = c.nodes[3]
    owner, want = state["owner"], state["want"]
    a = files("a", 240)
    live = [i for i in range(3) if i != VICTIM]
    before = {i: mc_stats(c, i)["get_hits"] for i in live}
    general_log(c, True)
    try:
        c.mc_proc(VICTIM).send_signal(signal.SIGKILL)
        c.mc_proc(VICTIM).wait()
        t0 = time.monotonic()
        got = read(n4, a)
        took = time.monotonic() - t0
        asked = looked_up(c) & set(a)
    finally:
        general_log(c, False)
    bad = [r for r in a if got[r][0] != want[r]]
    expect(not bad, "all 240 reads right with one server dead", [], bad[:5])
    dead = {r for r in a if owner[r] == VICTIM}
    expect(asked == dead, "MySQL asked for the dead server's keys alone",
           len(dead), {"asked": len(asked), "of live servers": len(asked - dead),
                       "dead ones not asked": len(dead - asked)})
    hits = {i: mc_stats(c, i)["get_hits"] - before[i] for i in live}
    share = {i: sum(1 for r in a if owner[r] == i) for i in live}
    expect(all(hits[i] >= share[i] for i in live),
           "the live servers' keys are still hits there", share, hits)
    times = sorted(t for _, t in got.values())
    slowest = times[-1]
    expect(slowest < 4 * TIMEOUT, "no read waits on the dead server",
           "< %.2f s" % (4 * TIMEOUT), round(slowest, 3))
    port = c.mc_ports()[VICTIM]
    down = log_lines(n4, r"memcached \S+:%d unreachable" % port)
    expect(len(down) == 1, "node4 says once that it is unreachable", 1, down)
    print("# after the kill: 240 reads in %.2f s, slowest %.3f s, median %.3f s;"
          " %d lookups went to MySQL, hits on the live servers %s"
          % (took, slowest, times[len(times) // 2], len(asked), hits))


def test_server_back_without_restart(c):
    """The killed server, started again on its port, gets keys and hits
    again with no agent restarted; the agent that saw it go says once that
    it is back, and none says it went down twice."""
    n3, n4 = c.nodes[2], c.nodes[3]
    want = state["want"]
    c.start_mc(VICTIM)
    port = c.mc_ports()[VICTIM]
    cfiles = files("c", 120)
    todo = list(cfiles)

    # Its breaker may be open for up to 8 s more: read a few at a time
    # until one of them has been stored there.
    def some_stored():
        if todo:
            got = read(n4, todo[:5], threads=1)
            expect(all(got[r][0] == want[r] for r in got), "node4 reads them right")
            del todo[:5]
        return mc_stats(c, VICTIM)["curr_items"] > 0
    expect(eventually(some_stored, 15, 0.3), "the server gets keys again within 15 s")
    if todo:
        got = read(n4, todo)
        expect(all(got[r][0] == want[r] for r in todo), "node4 reads the rest right")
    items = mc_stats(c, VICTIM)["curr_items"]
    before = mc_stats(c, VICTIM)["get_hits"]
    # node3's own breaker for the server may be open for up to 8 s more
    # (each agent learns for itself that it is back): read them again
    # until some of its lookups are hits there.
    # A file is looked up once: it is held there after.
    unread = list(cfiles)

    def node3_hits():
        batch, unread[:] = unread[:24], unread[24:]
        if batch:
            got = read(n3, batch)
            expect(all(got[r][0] == want[r] for r in batch), "node3 reads them right")
        return mc_stats(c, VICTIM)["get_hits"] - before if batch else -1
    hits = eventually(node3_hits, 15, 2)
    expect(hits > 0, "node3's lookups are hits there again within 15 s", "> 0", hits)
    if unread:
        got = read(n3, unread)
        expect(all(got[r][0] == want[r] for r in unread), "node3 reads the rest right")
    back = log_lines(n4, r"memcached \S+:%d reachable again" % port)
    expect(len(back) == 1, "node4 says once that it is back", 1, back)
    for node in c.nodes:
        flaps = log_lines(node, r"memcached \S+:%d unreachable" % port)
        expect(len(flaps) <= 1, "%s said it went down once at most" % node.name, "<= 1", flaps)
    print("# back: %d records stored there, then %d hits of node3's 120 lookups"
          % (items, hits))


def test_stopped_server_costs_one_timeout(c):
    """SIGSTOP of a server (connections open, no answer): the reads under
    way wait one timeout, the next ones pass it by at once, and so do
    those after 1 s, when it is tried again in the background; on SIGCONT
    it is used again."""
    n4 = c.nodes[3]
    want = state["want"]
    d = files("d", 120)
    port = c.mc_ports()[STOPPED]
    backs = len(log_lines(n4, r"memcached \S+:%d reachable again" % port))
    proc = c.mc_proc(STOPPED)
    proc.send_signal(signal.SIGSTOP)
    try:
        got = read(n4, d[:80], threads=4)
        time.sleep(1.2)                 # its breaker's first second
        later = read(n4, d[80:], threads=4)
    finally:
        proc.send_signal(signal.SIGCONT)
    got.update(later)
    bad = [r for r in d if got[r][0] != want[r]]
    expect(not bad, "all 120 reads right with a server stopped", [], bad[:5])

    def slow(reads):
        return sorted((round(t, 3) for _, t in reads.values() if t >= TIMEOUT * 0.9),
                      reverse=True)
    # The four readers' first calls to it may each wait once; then its
    # breaker is open.  A read slow for other reasons on a busy machine
    # is allowed for.
    first, second = slow({r: got[r] for r in d[:80]}), slow(later)
    expect(len(first) <= 6, "at most 6 of the first 80 reads waited for it", "<= 6", first)
    expect(not first or first[0] < 4 * TIMEOUT, "none waited more than a timeout or so",
           "< %.2f s" % (4 * TIMEOUT), first[:1])
    expect(not second, "none of the 40 reads while it is tried again waits", [], second)
    print("# a server stopped: %d of 80 reads took >= %.3f s (slowest %.3f s), then %d of 40"
          " while it was probed"
          % (len(first), TIMEOUT * 0.9, max(t for _, t in got.values()), len(second)))
    ffiles = files("f", 60)

    def back():
        if ffiles:
            read(n4, ffiles[:3], threads=1)
            del ffiles[:3]
        return len(log_lines(n4, r"memcached \S+:%d reachable again" % port)) > backs
    expect(eventually(back, 15, 0.2), "node4 uses it again after SIGCONT")


def test_write_while_cut_off_leaves_no_stale_record(c):
    """A file rewritten while the server holding its record is cut off
    (SIGSTOP: it keeps what it had): the writer's agent deletes that
    record there before it uses the server again."""
    n4 = c.nodes[3]
    rel = next(r for r in files("a", 240) if state["owner"][r] == STOPPED)
    key = record_key(c, rel)
    old = mc_command(c, STOPPED, "get " + key)
    expect(old.startswith("VALUE"), "its record is on the server", "VALUE ...", old[:60])
    port = c.mc_ports()[STOPPED]
    downs = len(log_lines(n4, r"memcached \S+:%d unreachable" % port))
    mends = len(log_lines(n4, r"memcached \S+:%d: deleted there" % port))
    efiles = files("e", 90)

    def version():
        return int(c.sql("SELECT version FROM cs.files WHERE path='%s'" % rel).stdout)
    v0 = version()
    proc = c.mc_proc(STOPPED)
    proc.send_signal(signal.SIGSTOP)
    try:
        def noticed():
            if efiles:
                read(n4, efiles[:3], threads=1)
                del efiles[:3]
            return len(log_lines(n4, r"memcached \S+:%d unreachable" % port)) > downs
        expect(eventually(noticed, 10, 0), "node4 finds the server gone")
        p = n4.run(["python3", "-c", "open(%r, 'wb').write(b'rewritten\\n' * 30)"
                    % os.path.join(n4.dir, rel)])
        expect(p.returncode == 0, "node4 rewrites the file", 0, p.stderr)
        expect(eventually(lambda: version() > v0, 10), "the registry has the new version")
    finally:
        proc.send_signal(signal.SIGCONT)

    def mended():
        if efiles:
            read(n4, efiles[:3], threads=1)
            del efiles[:3]
        return log_lines(n4, r"memcached \S+:%d: deleted there" % port)[mends:]
    expect(eventually(mended, 15, 0.2), "node4 deletes the records it could not write there")
    now = mc_command(c, STOPPED, "get " + key)
    expect(now != old, "the old record is not on the server any more", "not the old one", now[:60])
    print("# cut off, then back: %s" % mended()[0].split(" warn: ")[-1])


def test_bad_server_list_is_one_line(c):
    """A CS_MEMCACHED that does not parse: one line naming what is wrong,
    and the agent serves misses from MySQL."""
    n4 = c.nodes[3]
    want = state["want"]
    n4.stop_serve()
    before = len(log_lines(n4, "CS_MEMCACHED"))
    try:
        n4.start_serve(CS_MEMCACHED="%s,localhost:99999" % c.mc_list())
        rel = files("c", 120)[0]
        got = read(n4, [rel])
        expect(got[rel][0] == want[rel], "a miss is served without memcached")
        lines = log_lines(n4, "CS_MEMCACHED")[before:]
        expect(len(lines) == 1 and "localhost:99999" in lines[0] and "port" in lines[0]
               and "without memcached" in lines[0], "one line naming the bad server",
               "1 line", lines)
    finally:
        n4.stop_serve()
        n4.start_serve()


TESTS = [
    test_keys_spread_over_the_pool,
    test_one_server_killed,
    test_server_back_without_restart,
    test_stopped_server_costs_one_timeout,
    test_write_while_cut_off_leaves_no_stale_record,
    test_bad_server_list_is_one_line,
]


def main():
    return run(TESTS, PoolCluster(nodes=4, nginx=False,
                                  extra_env={"CS_REPLICAS": "1", "CS_DB_CONNECTIONS": "4"},
                                  log_level=os.environ.get("CS_TEST_LOG", "warn")))


if __name__ == "__main__":
    sys.exit(main())
