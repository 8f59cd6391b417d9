"""test_endpoint.py - the peer endpoint of cs-replicate serve under abuse:
what it refuses on a request's headers alone (a replayed PUT with another
body length or sent to another node, any unsigned request with a body).

Real memcached, MariaDB and three nodes, each with cs-replicate serve and
nginx under the library.  Requests are made on raw sockets where the test
must see what the agent answers before a body was sent.  Each test uses its
own file names; a test that restarts an agent restores it.  Prints TAP-style
lines and ends with "N passed, N failed".
"""
import os
import socket
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402
from tap import expect, run  # noqa: E402
from test_peer_writes import register, version_headers  # noqa: E402

SIXTEEN_GIB = 16 << 30


def head(method, path, headers):
    """A request's head on the wire: request line, headers, blank line."""
    lines = ["%s %s HTTP/1.1" % (method, urllib.parse.quote(path)), "Host: x"]
    lines += ["%s: %s" % kv for kv in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def raw(node, data, wait=5):
    """Send data on a fresh connection to node's agent, send nothing more,
    and read its answer: (status or None, seconds from sending to the status
    line, whether the agent closed the connection within 0.5 s of it)."""
    s = socket.create_connection(("127.0.0.1", node.serve_port), timeout=wait)
    got, at, closed = b"", None, False
    start = time.monotonic()
    deadline = start + wait
    try:
        s.sendall(data)
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            got += chunk
            if at is None and b"\r\n" in got:
                at = time.monotonic() - start
            if b"\r\n\r\n" in got:     # answers here are small: all of it is in
                deadline = min(deadline, time.monotonic() + 0.5)
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    finally:
        s.close()
    status = int(got.split(b" ")[1]) if got.startswith(b"HTTP/1.1 ") else None
    return status, at, closed


def captured_put(c, node, rel, data, rec):
    """The headers of a PUT of version rec of img/rel that node's peer
    signed for node, as anyone on the network path sees them."""
    when = int(time.time())
    path = "/v1/files/img/" + rel
    h = {"X-CS-Time": str(when),
         "X-CS-Signature": c.signature("PUT", path, when, rec["sha"], len(data), node.url),
         "X-CS-Node": "node1", "Content-Length": str(len(data))}
    h.update(version_headers(rec))
    return h


# ---- the body's length and the target are signed -----------------------------

def test_replayed_put_with_longer_body_refused(c):
    n2 = c.nodes[1]
    rel = "replay/longer.bin"
    data = os.urandom(50000)
    rec = register(c, rel, data)
    h = captured_put(c, n2, rel, data, rec)
    before = n2.stats()["rejected"]
    status, at, closed = raw(n2, head("PUT", "/v1/files/img/" + rel,
                                      dict(h, **{"Content-Length": str(SIXTEEN_GIB)})))
    expect(status == 401, "replayed with Content-Length 16 GiB: 401 before any body byte",
           401, status)
    expect(at < 1 and closed, "at once, and the connection closed", "< 1 s, closed", (at, closed))
    expect(n2.stats()["rejected"] == before + 1, "counted as a refusal")
    expect(n2.temp_files() == [] and not os.path.exists(os.path.join(n2.dir, rel)),
           "no temporary file, nothing installed", [], n2.temp_files())
    # The capture itself was good: unchanged, with its body, it is stored.
    status, _, _ = raw(n2, head("PUT", "/v1/files/img/" + rel, h) + data, wait=10)
    expect(status == 200, "the captured PUT as it was: 200", 200, status)


def test_replayed_put_to_other_node_refused_and_nothing_made(c):
    n2, n3 = c.nodes[1], c.nodes[2]
    rel = "replay-there/deep/er/r.bin"
    data = os.urandom(30000)
    rec = register(c, rel, data)
    h = captured_put(c, n2, rel, data, rec)
    status, at, closed = raw(n3, head("PUT", "/v1/files/img/" + rel, h) + data)
    expect(status == 401, "a PUT signed for node2, sent to node3: 401", 401, status)
    expect(closed, "and the connection closed")
    expect(not os.path.exists(os.path.join(n3.dir, "replay-there")),
           "no directory made on node3 for the refused PUT", False,
           os.path.exists(os.path.join(n3.dir, "replay-there")))
    expect(n3.temp_files() == [], "no temporary file on node3", [], n3.temp_files())


def test_unsigned_bodies_refused_at_headers(c):
    """Without a valid signature, a request with a body is answered 401 on
    its headers: the client has sent nothing more, and the connection is
    closed, so none of the body is ever read."""
    n2 = c.nodes[1]
    path = "/v1/files/img/nobody/x.bin"
    ten_gib = {"Content-Length": str(10 << 30)}
    forged = dict(ten_gib, **{"X-CS-Time": str(int(time.time())), "X-CS-Signature": "0" * 64})
    cases = [("GET", path, ten_gib), ("POST", path, ten_gib), ("DELETE", path, ten_gib),
             ("PUT", path, ten_gib), ("POST", "/v1/index", ten_gib),
             ("GET", path, forged), ("POST", path, forged), ("DELETE", path, forged),
             ("PATCH", path, forged)]
    for method, p, h in cases:
        status, at, closed = raw(n2, head(method, p, h))
        what = "%s %s, %s, 10 GiB body announced" % (method, p,
                                                     "forged" if "X-CS-Time" in h else "unsigned")
        expect(status == 401, what + ": 401 with no body sent", 401, status)
        expect(at < 1 and closed, what + ": at once, connection closed", "< 1 s, closed",
               (at, closed))
    status, _, closed = raw(n2, head("GET", path, {"Transfer-Encoding": "chunked"}))
    expect((status, closed) == (411, True), "a chunked body (its length cannot be signed): 411",
           (411, True), (status, closed))
    # Nothing unsigned keeps a connection open, not even the health check.
    status, _, closed = raw(n2, head("GET", "/v1/health", {}))
    expect((status, closed) == (200, True), "/v1/health answers and closes", (200, True),
           (status, closed))


def test_signed_bodies_checked_at_headers(c):
    n2 = c.nodes[1]
    path = "/v1/files/img/nobody/y.bin"
    when = int(time.time())
    sig = c.signature("GET", path, when, "-", 1 << 30, n2.url)
    status, at, closed = raw(n2, head("GET", path, {"X-CS-Time": str(when), "X-CS-Signature": sig,
                                                    "Content-Length": str(1 << 30)}))
    expect((status, closed) == (400, True), "a signed GET with a 1 GiB body: 400 before it",
           (400, True), (status, closed))
    big = (1 << 20) + 1
    sig = c.signature("POST", "/v1/index", when, "0" * 64, big, n2.url)
    status, at, closed = raw(n2, head("POST", "/v1/index", {
        "X-CS-Time": str(when), "X-CS-Signature": sig, "X-CS-SHA256": "0" * 64,
        "Content-Length": str(big)}))
    expect((status, closed) == (413, True), "a signed POST /v1/index over 1 MiB: 413 before it",
           (413, True), (status, closed))
    # A signed request without a body keeps its connection.
    status, _ = n2.signed("GET", "/v1/stats")
    expect(status == 200, "signed requests are answered as before", 200, status)


TESTS = [
    test_replayed_put_with_longer_body_refused,
    test_replayed_put_to_other_node_refused_and_nothing_made,
    test_unsigned_bodies_refused_at_headers,
    test_signed_bodies_checked_at_headers,
]


def main():
    return run(TESTS, Cluster(nodes=3))


if __name__ == "__main__":
    sys.exit(main())
