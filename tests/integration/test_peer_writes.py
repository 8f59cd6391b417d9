"""test_peer_writes.py - the peer side of writes: what cs-replicate serve
does with a signed PUT (a pushed version), POST (a rename) and DELETE (drop
superseded copies), what it refuses, its sweeper, and the agent's client
for them (agent/peer.c, through build/tests/peer_client).

Versions are registered the way an existing tree joins the cluster (put on
node1, `cs-replicate import`); newer versions and tombstones are written
into the registry with SQL, as the writer's node would (the agents'
background repair is off, CS_REPAIR_RATE=off).  Each test uses its own file
names.  Prints TAP-style lines and ends with "N passed, N failed".
"""
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BUILD, Cluster, WEB_USER  # noqa: E402
from tap import expect, run, eventually, sha  # noqa: E402

ESTALE, ENOENT, EIO, EHOSTUNREACH = 116, 2, 5, 113


def q(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def record(c, rel):
    """The registry's row for img/rel: version, size, mtime_ns, sha, deleted."""
    out = c.sql("SELECT version, size, mtime_ns, LOWER(HEX(sha256)), deleted FROM files"
                " WHERE namespace='img' AND path=%s" % q(rel), db="cs").stdout.split()
    if not out:
        return None
    return {"version": int(out[0]), "size": int(out[1]), "mtime_ns": int(out[2]),
            "sha": out[3], "deleted": int(out[4])}


def register(c, rel, data):
    """A version of img/rel held by node1, as `import` registers it."""
    n1 = c.nodes[0]
    n1.put(rel, data)
    # Other paths may conflict (superseded by SQL, not yet swept on node1).
    p = n1.cs("import", "img", check=False)
    rec = record(c, rel)
    expect(rec is not None and rec["sha"] == sha(data) and not rec["deleted"],
           "test setup: %s registered" % rel, sha(data), (rec, p.stderr[-300:]))
    return rec


def held(c, rel):
    """{node name: (version, stale)} from the replicas table."""
    out = c.sql("SELECT n.name, r.version, r.stale FROM replicas r"
                " JOIN nodes n ON n.id=r.node_id JOIN files f ON f.id=r.file_id"
                " WHERE f.namespace='img' AND f.path=%s" % q(rel), db="cs").stdout
    return {name: (int(v), int(s)) for name, v, s in (l.split() for l in out.splitlines())}


def supersede(c, rel, data=None):
    """What the writer's node does to the registry: a new version (or a
    tombstone when data is None), every held copy stale."""
    if data is None:
        change = "deleted=1"
    else:
        change = "deleted=0, size=%d, mtime_ns=%d, sha256=UNHEX('%s')" % (
            len(data), time.time_ns(), sha(data))
    c.sql("UPDATE files SET version=version+1, %s WHERE namespace='img' AND path=%s;"
          "UPDATE replicas r JOIN files f ON f.id=r.file_id SET r.stale=1"
          " WHERE f.namespace='img' AND f.path=%s" % (change, q(rel), q(rel)), db="cs")
    return record(c, rel)


def version_headers(rec, **override):
    h = {"X-CS-SHA256": rec["sha"], "X-CS-Version": str(rec["version"]),
         "X-CS-Mtime": str(rec["mtime_ns"])}
    h.update(override)
    return {k: v for k, v in h.items() if v is not None}


def push(node, rel, data, rec, path=None, raw=None, headers=None, **kw):
    """A signed PUT of data as version rec of img/rel."""
    h = version_headers(rec, **(headers or {}))
    return node.signed("PUT", path or "/v1/files/img/" + rel, raw=raw, headers=h, body=data,
                       body_sha=h.get("X-CS-SHA256", "-"), **kw)


def move(node, src, dst, rec, signed_src=None, headers=None):
    """A signed POST renaming node's copy of img/src to img/dst."""
    h = version_headers(rec, **{"X-CS-From": src})
    h.update(headers or {})
    return node.signed("POST", "/v1/files/img/" + dst, headers=h,
                       body_sha="%s:%s" % (rec["sha"], signed_src or src))


def local(node, rel):
    return os.path.join(node.dir, rel)


def nothing_left(node, rel, what):
    expect(not os.path.lexists(local(node, rel)), what + ": no file installed")
    expect(node.temp_files() == [], what + ": no temporary file left", [], node.temp_files())


# ---- PUT ---------------------------------------------------------------

def test_put_installs(c):
    n1, n2 = c.nodes[0], c.nodes[1]
    data = os.urandom(3 * 1024 * 1024 + 17)
    rec = register(c, "put/photo.jpg", data)
    before = n2.stats()
    status, body = push(n2, "put/photo.jpg", data, rec)
    expect((status, body) == (200, b"stored\n"), "a good PUT is stored", 200, (status, body))
    path = local(n2, "put/photo.jpg")
    with open(path, "rb") as f:
        expect(sha(f.read()) == sha(data), "bytes identical")
    st = os.stat(path)
    expect(st.st_mtime_ns == rec["mtime_ns"] == os.stat(local(n1, "put/photo.jpg")).st_mtime_ns,
           "mtime as the registry has it", rec["mtime_ns"], st.st_mtime_ns)
    expect(pwd.getpwuid(st.st_uid).pw_name == WEB_USER, "owned by the daemon's user")
    expect(eventually(lambda: held(c, "put/photo.jpg").get("node2") == (rec["version"], 0), 2),
           "node2 recorded as holder of the version", (rec["version"], 0),
           held(c, "put/photo.jpg").get("node2"))
    after = n2.stats()
    expect(after["files_received"] - before["files_received"] == 1, "stats count the push")
    expect(after["bytes_received"] - before["bytes_received"] == len(data),
           "stats count its bytes", len(data), after["bytes_received"] - before["bytes_received"])
    expect(n2.temp_files() == [], "no temporary file left", [], n2.temp_files())
    status, got = n2.signed("GET", "/v1/files/img/put/photo.jpg")
    expect(status == 200 and got == data, "node2 now serves it to peers", 200, status)


def test_put_empty_file_and_new_directories(c):
    n2 = c.nodes[1]
    rec = register(c, "put/deep/er/empty.txt", b"")
    status, _ = push(n2, "put/deep/er/empty.txt", b"", rec)
    expect(status == 200, "an empty file is stored", 200, status)
    expect(os.path.getsize(local(n2, "put/deep/er/empty.txt")) == 0, "empty on node2")
    st = os.stat(local(n2, "put/deep/er"))
    expect(pwd.getpwuid(st.st_uid).pw_name == WEB_USER, "missing directories made")


def test_put_replaces_older_version(c):
    n2 = c.nodes[1]
    old = b"version one\n"
    rec = register(c, "put/replace.txt", old)
    expect(push(n2, "put/replace.txt", old, rec)[0] == 200, "first version stored")
    new = b"version two, longer\n"
    rec2 = supersede(c, "put/replace.txt", new)
    status, _ = push(n2, "put/replace.txt", new, rec2)
    expect(status == 200, "the newer version is stored", 200, status)
    with open(local(n2, "put/replace.txt"), "rb") as f:
        expect(f.read() == new, "the copy is the new version")
    status, _ = push(n2, "put/replace.txt", old, rec)
    expect(status == 409, "pushing the old version again -> 409", 409, status)
    with open(local(n2, "put/replace.txt"), "rb") as f:
        expect(f.read() == new, "the new version stays")
    expect(n2.temp_files() == [], "no temporary file left", [], n2.temp_files())


def test_put_refusals(c):
    n2 = c.nodes[1]
    data = os.urandom(20000)
    rel = "refuse/r.bin"
    rec = register(c, rel, data)
    path = "/v1/files/img/" + rel
    other = os.urandom(len(data))
    cases = [
        ("unsigned", 401, lambda: push(n2, rel, data, rec, sig=False)),
        ("forged signature", 401, lambda: push(n2, rel, data, rec, sig="0" * 64)),
        ("wrong secret", 401, lambda: push(n2, rel, data, rec, secret="wrong")),
        ("stale time", 401, lambda: push(n2, rel, data, rec, when=int(time.time()) - 3600)),
        ("signed over another body hash", 401,
         lambda: n2.signed("PUT", path, headers=version_headers(rec), body=data,
                           body_sha=sha(other))),
        ("body not matching X-CS-SHA256", 400, lambda: push(n2, rel, other, rec)),
        ("missing X-CS-Version", 400,
         lambda: push(n2, rel, data, rec, headers={"X-CS-Version": None})),
        ("malformed X-CS-Mtime", 400,
         lambda: push(n2, rel, data, rec, headers={"X-CS-Mtime": "12abc"})),
        ("malformed X-CS-SHA256", 400,
         lambda: push(n2, rel, data, rec, headers={"X-CS-SHA256": "xyz"})),
        ("version the registry does not have", 409,
         lambda: push(n2, rel, data, rec, headers={"X-CS-Version": str(rec["version"] + 5)})),
        ("mtime not the registry's", 409,
         lambda: push(n2, rel, data, rec, headers={"X-CS-Mtime": str(rec["mtime_ns"] + 1)})),
        ("oversized Content-Length", 413,
         lambda: push(n2, rel, None, rec, headers={"Content-Length": str(17 << 30)})),
        ("no Content-Length", 411, lambda: push(n2, rel, None, rec)),
        ("chunked", 411,
         lambda: push(n2, rel, None, rec, headers={"Transfer-Encoding": "chunked"})),
    ]
    for what, want, request in cases:
        status, _ = request()
        expect(status == want, "PUT refused: " + what, want, status)
        nothing_left(n2, rel, what)
    for raw in ("/v1/files/img/../etc/x", "/v1/files/img/%2e%2e/etc/x",
                "/v1/files/img/a/%2E%2E/../x", "/v1/files/img/a//x", "/v1/files/img/x%2Fy"):
        decoded = raw.replace("%2e", ".").replace("%2E", ".").replace("%2F", "/")
        status, _ = push(n2, rel, data, rec, path=decoded, raw=raw)
        expect(status == 400, "traversal refused: " + raw, 400, status)
    expect(not os.path.exists(os.path.join(c.nodes[1].home, "etc")), "nothing outside")
    expect(push(n2, rel, data, rec)[0] == 200, "the same PUT, correct, is stored")


def test_put_symlink_out_of_namespace(c):
    n2 = c.nodes[1]
    outside = tempfile.mkdtemp(prefix="cs-outside.")
    try:
        os.chmod(outside, 0o777)
        os.symlink(outside, local(n2, "escape"))
        data = b"must not leave the namespace\n"
        rec = register(c, "escape/x.txt", data)
        status, _ = push(n2, "escape/x.txt", data, rec)
        expect(status == 400, "parent is a symlink leading out -> 400", 400, status)
        expect(os.listdir(outside) == [], "nothing written outside", [], os.listdir(outside))
        os.symlink("/etc/passwd", local(n2, "file-link"))
        rec = register(c, "file-link/y.txt", data)
        status, _ = push(n2, "file-link/y.txt", data, rec)
        expect(status == 400, "parent is a symlink to a file -> 400", 400, status)
        n2.put("inside/real/other.txt", b"")     # directories owned by the web user
        os.symlink("real", local(n2, "inside/alias"))
        rec = register(c, "inside/alias/z.txt", data)
        status, _ = push(n2, "inside/alias/z.txt", data, rec)
        expect(status == 200, "a symlink staying inside the namespace is followed", 200, status)
        expect(os.path.exists(local(n2, "inside/real/z.txt")), "stored through it")
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def start_push(c, node, rel, data, rec):
    """A signed PUT on a raw socket that has sent half its body so far."""
    path = "/v1/files/img/" + rel
    when = int(time.time())
    sig = c.signature("PUT", path, when, rec["sha"], len(data), node.url)
    head = ("PUT %s HTTP/1.1\r\nHost: x\r\nX-CS-Time: %d\r\nX-CS-Signature: %s\r\n"
            "X-CS-SHA256: %s\r\nX-CS-Version: %d\r\nX-CS-Mtime: %d\r\n"
            "Content-Length: %d\r\n\r\n" % (path, when, sig, rec["sha"], rec["version"],
                                            rec["mtime_ns"], len(data)))
    s = socket.create_connection(("127.0.0.1", node.serve_port))
    s.sendall(head.encode() + data[:len(data) // 2])
    expect(eventually(lambda: node.temp_files() != [], 3),
           "the body streams into a temporary file")
    return s


def test_put_client_gone_midway(c):
    n2 = c.nodes[1]
    rel = "gone/half.bin"
    data = os.urandom(2 * 1024 * 1024)
    rec = register(c, rel, data)
    start_push(c, n2, rel, data, rec).close()
    expect(eventually(lambda: n2.temp_files() == [], 3),
           "client gone midway: the temporary file is removed", [], n2.temp_files())
    expect(not os.path.exists(local(n2, rel)), "and nothing installed")
    status, _ = push(n2, rel, data, rec)
    expect(status == 200, "the path is free again: a full PUT is stored", 200, status)


def test_put_same_path_twice_at_once(c):
    """A push of a path that another push is still sending is not held up
    by it: each streams into its own unseen file, the second is stored at
    once, the first when its body is complete, and the file ends complete
    with no temporary file left."""
    n2 = c.nodes[1]
    rel = "twice/t.bin"
    data = os.urandom(1024 * 1024)
    rec = register(c, rel, data)
    first = start_push(c, n2, rel, data, rec)
    try:
        t = time.monotonic()
        status, _ = push(n2, rel, data, rec)
        took = time.monotonic() - t
        expect(status == 200, "the second push meanwhile is stored", 200, status)
        expect(took < 2, "without waiting for the first", "< 2 s", "%.1f s" % took)
        with open(local(n2, rel), "rb") as f:
            expect(f.read() == data, "its bytes are there while the first is under way")
        first.sendall(data[len(data) // 2:])
        first.settimeout(10)
        answer = b""
        while b"stored" not in answer:
            chunk = first.recv(4096)
            if not chunk:
                break
            answer += chunk
    finally:
        first.close()
    expect(answer.startswith(b"HTTP/1.1 200") and b"stored" in answer,
           "the first push completes", "200 stored", answer[:80])
    with open(local(n2, rel), "rb") as f:
        expect(f.read() == data, "with its bytes")
    expect(eventually(lambda: n2.temp_files() == [], 3), "no temporary file left", [],
           n2.temp_files())


# ---- POST (move) -------------------------------------------------------

def test_move(c):
    n1, n2 = c.nodes[0], c.nodes[1]
    data = os.urandom(50000)
    rec_a = register(c, "mv/a.bin", data)
    expect(push(n2, "mv/a.bin", data, rec_a)[0] == 200, "node2 holds mv/a.bin")
    time.sleep(0.01)
    rec_b = register(c, "mv/sub/b.bin", data)           # the same bytes, a new path
    expect(rec_b["mtime_ns"] != rec_a["mtime_ns"], "test setup: b has its own mtime")
    status, body = move(n2, "mv/a.bin", "mv/sub/b.bin", rec_b)
    expect((status, body) == (200, b"moved\n"), "move accepted", 200, (status, body))
    expect(not os.path.exists(local(n2, "mv/a.bin")), "no mv/a.bin on node2 any more")
    with open(local(n2, "mv/sub/b.bin"), "rb") as f:
        expect(f.read() == data, "node2 has mv/sub/b.bin with the bytes")
    st = os.stat(local(n2, "mv/sub/b.bin"))
    expect(st.st_mtime_ns == rec_b["mtime_ns"], "with b's registered mtime",
           rec_b["mtime_ns"], st.st_mtime_ns)
    expect(eventually(lambda: held(c, "mv/sub/b.bin").get("node2") == (rec_b["version"], 0), 2),
           "node2 recorded as holder of b", (rec_b["version"], 0), held(c, "mv/sub/b.bin"))
    expect(n2.temp_files() == [], "no temporary file left", [], n2.temp_files())
    del n1


def test_move_refusals(c):
    n2 = c.nodes[1]
    data = os.urandom(3000)
    rec_a = register(c, "mvr/a.bin", data)
    expect(push(n2, "mvr/a.bin", data, rec_a)[0] == 200, "node2 holds mvr/a.bin")
    rec_b = register(c, "mvr/b.bin", data)
    rec_c = register(c, "mvr/c.bin", os.urandom(3000))
    cases = [
        ("source missing", 404, dict(src="mvr/none.bin", dst="mvr/b.bin", rec=rec_b)),
        ("source has other bytes than the target's version", 409,
         dict(src="mvr/a.bin", dst="mvr/c.bin", rec=rec_c)),
        ("target version the registry does not have", 409,
         dict(src="mvr/a.bin", dst="mvr/b.bin", rec=dict(rec_b, version=rec_b["version"] + 3))),
        ("target not registered", 409, dict(src="mvr/a.bin", dst="mvr/x.bin", rec=rec_b)),
        ("source path with '..'", 400, dict(src="../node1/img/mvr/a.bin", dst="mvr/b.bin",
                                            rec=rec_b)),
        ("signature over another source", 401,
         dict(src="mvr/a.bin", dst="mvr/b.bin", rec=rec_b, signed_src="mvr/other.bin")),
        ("no X-CS-From", 400, dict(src="mvr/a.bin", dst="mvr/b.bin", rec=rec_b,
                                   headers={"X-CS-From": None})),
    ]
    for what, want, kw in cases:
        hdrs = kw.pop("headers", None)
        if hdrs and hdrs.get("X-CS-From", "") is None:
            h = version_headers(kw["rec"])
            status, _ = n2.signed("POST", "/v1/files/img/" + kw["dst"], headers=h,
                                  body_sha=kw["rec"]["sha"])
        else:
            status, _ = move(n2, **kw)
        expect(status == want, "move refused: " + what, want, status)
        expect(os.path.exists(local(n2, "mvr/a.bin")), what + ": the source stays")
        expect(not os.path.exists(local(n2, "mvr/b.bin")) and
               not os.path.exists(local(n2, "mvr/c.bin")), what + ": no target made")
    expect(os.stat(local(n2, "mvr/a.bin")).st_mtime_ns == rec_a["mtime_ns"],
           "the source keeps its mtime (the sweeper still knows it)")
    expect(n2.temp_files() == [], "no temporary file left", [], n2.temp_files())


# ---- DELETE and the sweeper -----------------------------------------------

def test_delete_sweeps_superseded_copies(c):
    n2 = c.nodes[1]
    gone, mine = "del/x.bin", "del/mine.bin"
    for rel in (gone, mine):
        data = os.urandom(4000)
        rec = register(c, rel, data)
        expect(push(n2, rel, data, rec)[0] == 200, "node2 holds " + rel)
    st = os.stat(local(n2, mine))
    os.utime(local(n2, mine), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # a local write
    supersede(c, gone)
    supersede(c, mine)
    status, body = n2.signed("DELETE", "/v1/files/img/" + gone)
    expect(status == 200 and body.startswith(b"swept "), "DELETE answered", 200, (status, body))
    expect(not os.path.exists(local(n2, gone)), "the tombstoned copy is gone when DELETE returns")
    time.sleep(0.6)        # and the sweeper has had its turns
    expect(os.path.exists(local(n2, mine)),
           "a copy that differs from what was installed (a local write) is kept")
    # The changed copy's record stays, stale: it says which version the
    # local write began from (a concurrent write is told by it), until that
    # write is registered over it.
    expect("node2" not in held(c, gone) and held(c, mine).get("node2", (0, 1))[1] == 1,
           "node2 no longer listed for the swept one, and only as stale for the changed one",
           ({}, "stale"), (held(c, gone), held(c, mine)))
    status, _ = n2.signed("DELETE", "/v1/files/img/" + gone)
    expect(status == 200, "a second DELETE is fine", 200, status)
    expect(n2.temp_files() == [], "no temporary file left", [], n2.temp_files())


def test_sweeper_removes_without_request(c):
    n2 = c.nodes[1]
    rels = ["sweep/s.bin", "sweep/t.bin"]
    for rel in rels:
        data = os.urandom(1000)
        expect(push(n2, rel, data, register(c, rel, data))[0] == 200, "node2 holds " + rel)
    supersede(c, rels[0])                                # deleted
    supersede(c, rels[1], b"a newer version elsewhere\n")  # overwritten
    start = time.monotonic()
    expect(eventually(lambda: not any(os.path.exists(local(n2, r)) for r in rels), 2),
           "superseded copies removed by the sweeper within 2 s",
           [], [r for r in rels if os.path.exists(local(n2, r))])
    took = time.monotonic() - start
    expect(eventually(lambda: all("node2" not in held(c, r) for r in rels), 2),
           "and dropped from the registry")
    print("# sweeper removed both in %.2f s" % took)


def test_other_methods(c):
    import http.client
    n2 = c.nodes[1]
    path = "/v1/files/img/any.txt"
    when = int(time.time())
    conn = http.client.HTTPConnection("127.0.0.1", n2.serve_port, timeout=10)
    try:
        conn.request("PATCH", path, headers={
            "X-CS-Time": str(when),
            "X-CS-Signature": c.signature("PATCH", path, when, target=n2.url)})
        r = conn.getresponse()
        r.read()
        allow = r.getheader("Allow", "")
    finally:
        conn.close()
    expect(r.status == 405, "PATCH -> 405", 405, r.status)
    expect(set(a.strip() for a in allow.split(",")) == {"GET", "HEAD", "PUT", "POST", "DELETE"},
           "Allow lists every method", "GET, HEAD, PUT, POST, DELETE", allow)
    expect(n2.signed("DELETE", path, sig=False)[0] == 401, "unsigned DELETE -> 401")
    expect(n2.signed("POST", path, sig=False)[0] == 401, "unsigned POST -> 401")


# ---- the agent's client (agent/peer.c) against the real daemon -------------

def test_peer_client(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    prog = os.path.join(BUILD, "tests/peer_client")

    def run(*args):
        p = subprocess.run([prog] + [str(a) for a in args], env=n1.env(), capture_output=True,
                           text=True, timeout=60)
        expect(p.returncode == 0, "peer_client %s ran" % args[0], 0, (p.returncode, p.stderr))
        return int(p.stdout.strip())

    def vers(rec):
        return [rec["version"], rec["size"], rec["mtime_ns"], rec["sha"]]

    data = os.urandom(5 * 1024 * 1024 + 3)
    rec = register(c, "client/p q.bin", data)
    src = local(n1, "client/p q.bin")
    rc = run("push", n3.url, "img", "client/p q.bin", src, *vers(rec))
    expect(rc == 0, "cs_peer_push: stored", 0, rc)
    with open(local(n3, "client/p q.bin"), "rb") as f:
        expect(sha(f.read()) == sha(data), "pushed bytes identical (name with a space)")
    expect(os.stat(local(n3, "client/p q.bin")).st_mtime_ns == rec["mtime_ns"], "pushed mtime")
    rc = run("push", n3.url, "img", "client/p q.bin", src, *vers(dict(rec, version=rec["version"] + 1)))
    expect(rc == -ESTALE, "cs_peer_push of a version the registry lacks: -ESTALE", -ESTALE, rc)
    rc = run("push", "http://127.0.0.1:1", "img", "client/p q.bin", src, *vers(rec))
    expect(rc == -EHOSTUNREACH, "cs_peer_push to nobody: -EHOSTUNREACH", -EHOSTUNREACH, rc)

    time.sleep(0.01)
    rec_q = register(c, "client/r\u00e9nomm\u00e9.bin", data)
    rc = run("move", n3.url, "img", "client/p q.bin", "client/r\u00e9nomm\u00e9.bin", *vers(rec_q))
    expect(rc == 0, "cs_peer_move: renamed", 0, rc)
    expect(os.path.exists(local(n3, "client/r\u00e9nomm\u00e9.bin")) and
           not os.path.exists(local(n3, "client/p q.bin")), "node3's copy renamed")
    rc = run("move", n3.url, "img", "client/p q.bin", "client/r\u00e9nomm\u00e9.bin", *vers(rec_q))
    expect(rc == -ENOENT, "cs_peer_move without a source copy: -ENOENT", -ENOENT, rc)

    supersede(c, "client/r\u00e9nomm\u00e9.bin")
    rc = run("delete", n3.url, "img", "client/r\u00e9nomm\u00e9.bin")
    expect(rc == 0, "cs_peer_delete: 0", 0, rc)
    expect(not os.path.exists(local(n3, "client/r\u00e9nomm\u00e9.bin")), "node3's copy gone")
    rc = run("delete", "http://127.0.0.1:1", "img", "client/x")
    expect(rc == -EIO, "cs_peer_delete to nobody: -EIO", -EIO, rc)
    expect(n3.temp_files() == [], "no temporary file left on node3", [], n3.temp_files())


TESTS = [
    test_put_installs,
    test_put_empty_file_and_new_directories,
    test_put_replaces_older_version,
    test_put_refusals,
    test_put_symlink_out_of_namespace,
    test_put_client_gone_midway,
    test_put_same_path_twice_at_once,
    test_move,
    test_move_refusals,
    test_delete_sweeps_superseded_copies,
    test_sweeper_removes_without_request,
    test_other_methods,
    test_peer_client,
]


def main():
    # No background repair: the tests write the registry's records by hand
    # and look at each node's copies, which a repair pass would change
    # under them (it pushed a file a test had just moved away back).
    return run(TESTS, Cluster(nodes=3, nginx=False, extra_env={"CS_REPAIR_RATE": "off"}))


if __name__ == "__main__":
    sys.exit(main())
