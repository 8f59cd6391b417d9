"""test_locality.py - where copies go and where reads come from: a write's
copies spread across zones, a reader fetches from a holder in its own
CS_ZONE, and among equals from the one measured fastest.

Real memcached, MariaDB, four nodes with cs-replicate serve and nginx under
the library: node1 and node2 in zone a, node3 and node4 in zone b,
CS_REPLICAS=2.  node1's peers reach it through a proxy that delays each
connection's traffic by 120 ms (its CS_NODE_URL is the proxy's), so node1
is the slow holder.  Prints TAP-style lines and ends with "N passed,
N failed".
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, free_port  # noqa: E402
from tap import expect, run, eventually, sha, file_sha  # noqa: E402

ZONES = {"node1": "a", "node2": "a", "node3": "b", "node4": "b"}
DELAY = 0.12


class DelayProxy:
    """127.0.0.1:port -> target_port; each chunk from the target waits
    DELAY before it goes on (what a far or busy peer looks like).  Counts
    the connections it carried."""

    def __init__(self, target_port):
        self.port = free_port()
        self.target = target_port
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                a.close()
                continue
            threading.Thread(target=self.pump, args=(a, b, 0), daemon=True).start()
            threading.Thread(target=self.pump, args=(b, a, DELAY), daemon=True).start()

    @staticmethod
    def pump(src, dst, delay):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


PROXY = {}


def node_env(node):
    env = {"CS_ZONE": ZONES[node.name]}
    if node.name == "node1":
        if "node1" not in PROXY:
            PROXY["node1"] = DelayProxy(node.serve_port)
        node.url = "http://127.0.0.1:%d" % PROXY["node1"].port
        env["CS_NODE_URL"] = node.url
    return env


def write(node, rel, data):
    node.mkdir(os.path.dirname(rel))
    p = node.run(["sh", "-c", 'cat > "$1"', "sh", os.path.join(node.dir, rel)], input=data)
    expect(p.returncode == 0, "written", 0, p.stderr)


def holders(c, rel):
    return [n.name for n in c.nodes if file_sha(os.path.join(n.dir, rel))]


def served(node):
    return node.stats()["files_served"]


def test_copies_spread_across_zones(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    rels = ["spread/a%d.bin" % i for i in range(8)] + ["spread/b%d.bin" % i for i in range(8)]
    for rel in rels:
        write(n1 if "/a" in rel else n3, rel, os.urandom(5000))
    expect(eventually(lambda: all(len(holders(c, r)) >= 2 for r in rels), 30),
           "every file on two nodes")
    for rel in rels:
        zones = {ZONES[h] for h in holders(c, rel)}
        expect(zones == {"a", "b"}, rel + ": a copy in each zone", {"a", "b"}, holders(c, rel))


def test_reader_prefers_its_zone(c):
    """Written on node4 (zone b), so each file's second copy is in zone a;
    the other zone-a node reads it from that copy, not from the writer."""
    n1, n2, n3, n4 = c.nodes
    rels = ["zone/f%d.bin" % i for i in range(6)]
    for rel in rels:
        write(n4, rel, os.urandom(4000))
    expect(eventually(lambda: all(len(holders(c, r)) >= 2 for r in rels), 30), "replicated")
    for rel in rels:
        near = [h for h in holders(c, rel) if ZONES[h] == "a"]
        expect(len(near) == 1, rel + ": one copy in zone a", 1, holders(c, rel))
        holder = n1 if near[0] == "node1" else n2
        reader = n2 if holder is n1 else n1
        before = {n.name: served(n) for n in c.nodes}
        st, body = reader.get("/" + rel)
        expect(st == 200, "read on " + reader.name, 200, st)
        after = {n.name: served(n) for n in c.nodes}
        expect(after[holder.name] == before[holder.name] + 1 and
               after["node4"] == before["node4"] and after["node3"] == before["node3"],
               "%s served from %s in its zone, not the writer" % (rel, holder.name),
               holder.name, (before, after))


def test_fastest_measured_holder_is_preferred(c):
    n1, n2, n3, n4 = c.nodes
    proxy = PROXY["node1"]
    # Files on node1 (slow, registered first) and node2 (fast), both zone a;
    # node3 (zone b) reads them: the two holders are equals but for speed.
    n3.stop_serve()
    n4.stop_serve()
    rels = ["fast/f%d.bin" % i for i in range(12)]
    try:
        for rel in rels:
            write(n1, rel, os.urandom(3000))
        expect(eventually(lambda: all(set(holders(c, r)) == {"node1", "node2"}
                                      for r in rels), 30), "on node1 and node2")
    finally:
        n3.start_serve()
        n4.start_serve()
    before_slow, before_fast = served(n1), served(n2)
    for rel in rels:
        st, body = n3.get("/" + rel)
        expect(st == 200 and sha(body) == file_sha(os.path.join(n1.dir, rel)),
               "read on node3", 200, st)
    slow, fast = served(n1) - before_slow, served(n2) - before_fast
    # Registry order alone would send every miss to node1 (the oldest copy);
    # once both are measured the faster one gets them.
    expect(slow + fast == len(rels) and slow <= 2, "the measured faster holder serves the rest",
           "slow <= 2", (slow, fast, proxy.connections))


if __name__ == "__main__":
    sys.exit(run([test_copies_spread_across_zones,
                  test_reader_prefers_its_zone,
                  test_fastest_measured_holder_is_preferred],
                 Cluster(nodes=4, log_level="info", node_env=node_env,
                         extra_env={"CS_REPLICAS": "2"})))
