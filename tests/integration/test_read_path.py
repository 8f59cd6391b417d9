"""test_read_path.py - the read path as a user sees it: real memcached,
MariaDB, three nodes each with cs-replicate serve and nginx under the
library, workers running as www-data.

Each test uses its own file names; a test that stops a server starts it
again.  Prints TAP-style lines and ends with "N passed, N failed".
"""
import concurrent.futures
import os
import pwd
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BUILD, Cluster, WEB_USER  # noqa: E402
from tap import expect, run, eventually, sha  # noqa: E402


def test_miss_fetch_served(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    data = os.urandom(121 * 1024)
    n1.put("hello/photo.jpg", data)
    n1.import_ns()
    before = n1.stats()["files_served"]
    status, body = n3.get("/hello/photo.jpg")
    expect(status == 200, "node3 serves a file only node1 had", 200, status)
    expect(sha(body) == sha(data), "bytes identical", sha(data), sha(body))
    local = os.path.join(n3.dir, "hello/photo.jpg")
    st = os.stat(local)
    expect(st.st_size == len(data), "file installed on node3")
    expect(pwd.getpwuid(st.st_uid).pw_name == WEB_USER,
           "fetched by a www-data worker: owned by www-data",
           WEB_USER, pwd.getpwuid(st.st_uid).pw_name)
    expect(st.st_mtime_ns == os.stat(os.path.join(n1.dir, "hello/photo.jpg")).st_mtime_ns,
           "mtime copied from the registry, so Last-Modified agrees across nodes")
    expect(n1.stats()["files_served"] == before + 1, "one transfer")
    status, body = n3.get("/hello/photo.jpg")
    expect(status == 200 and body == data, "second GET still served")
    expect(n1.stats()["files_served"] == before + 1,
           "second GET is a local hit: no further transfer",
           before + 1, n1.stats()["files_served"])


def test_nested_directories(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    data = b"\x89PNG nested " + os.urandom(1000)
    n1.put("a/b/c/d.png", data)
    n1.import_ns()
    status, body = n3.get("/a/b/c/d.png", try_files=True)
    expect(status == 200 and body == data, "nested file through try_files (stat64 first)",
           200, status)
    for d in ("a", "a/b", "a/b/c"):
        st = os.stat(os.path.join(n3.dir, d))
        expect(pwd.getpwuid(st.st_uid).pw_name == WEB_USER,
               "parent directory %s created for www-data" % d)


def test_absent_is_404(c):
    n3 = c.nodes[2]
    asked = n3.stats()["misses_asked"]
    for try_files in (False, True):
        for attempt in range(3):        # answered from the index each time
            status, _ = n3.get("/no/such/file-%d.jpg" % try_files, try_files=try_files)
            expect(status == 404, "absent file -> 404 (try_files=%s, attempt %d)"
                   % (try_files, attempt), 404, status)
    expect(not os.path.exists(os.path.join(n3.dir, "no")), "nothing created for a 404")
    expect(n3.stats()["misses_asked"] == asked,
           "the 404s were answered in the workers, from the index: the agent was not asked",
           asked, n3.stats()["misses_asked"])


def test_create_after_404(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    status, _ = n3.get("/later.txt")
    expect(status == 404, "not there yet", 404, status)
    n1.put("later.txt", b"now it exists\n")
    n1.import_ns()
    # The import announced the name to every node's index before it
    # registered it: node3 serves it at once, no waiting.
    status, body = n3.get("/later.txt")
    expect(status == 200 and body == b"now it exists\n",
           "a file registered after a 404 is served at once", 200, status)


def test_holder_down_other_holder_serves(c):
    n1, n2, n3 = c.nodes
    data = os.urandom(50000)
    n1.put("both/x.bin", data)
    n2.put("both/x.bin", data)
    n1.import_ns()
    n2.import_ns()
    n1.stop_serve()
    try:
        status, body = n3.get("/both/x.bin")
        expect(status == 200 and body == data, "node1 down: node3 fetches from node2", 200, status)
    finally:
        n1.start_serve()


def test_dead_holder_read_from_last(c):
    """A holder that does not answer is demoted: the misses after it go to
    the live holder first instead of trying the dead one every time."""
    n1, n2, n3 = c.nodes
    names = ["dead/f%02d.bin" % i for i in range(20)]
    blobs = {}
    for name in names:
        blobs[name] = os.urandom(2000)
        n1.put(name, blobs[name])
        n2.put(name, blobs[name])
    n1.import_ns()          # node1's copies are the older: it is tried first
    n2.import_ns()
    log = os.path.join(n3.home, "serve.log")
    start = os.path.getsize(log)
    n1.stop_serve()
    try:
        for name in names:
            status, body = n3.get("/" + name)
            expect(status == 200 and body == blobs[name],
                   "node1 down: node3 gets %s from node2" % name, 200, status)
    finally:
        n1.start_serve()
    with open(log, errors="replace") as f:
        f.seek(start)
        tries = sum(1 for line in f if "fetch %s/" % n1.url in line)
    # Demoted for 1 s, then 2, 4, 8 ...: while its last heartbeat still
    # counts (CS_UP_SECONDS, plus the node table's caching) node1 can be
    # tried again at most a few times, however many misses there are.
    expect(tries <= 5, "the dead holder was tried at most 5 times for %d misses" % len(names),
           "<= 5", tries)


def test_registry_down(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    held = os.urandom(10000)
    n1.put("down/held.bin", held)
    n1.import_ns()
    expect(n3.get("/down/held.bin")[0] == 200, "node3 holds the file before the outage")
    later = os.urandom(10000)
    n1.put("down/after.bin", later)
    c.stop_memcached()
    c.stop_mariadb()
    try:
        status, body = n3.get("/down/held.bin")
        expect(status == 200 and body == held, "registry down: a local hit is still served",
               200, status)
        times = []
        for i in range(5):
            t = time.monotonic()
            status, _ = n3.get("/down/miss-%d.bin" % i)
            times.append(time.monotonic() - t)
            expect(status == 404, "registry down: a miss is a 404", 404, status)
        expect(max(times) < 2.0, "registry down: misses fail fast (each < 2 s)",
               "< 2 s", ["%.3f" % t for t in times])
    finally:
        c.start_memcached()
        c.start_mariadb()
    n1.import_ns()
    deadline = time.monotonic() + 20     # the breaker retries within 8 s
    while time.monotonic() < deadline:
        status, body = n3.get("/down/after.bin")
        if status == 200:
            break
        time.sleep(0.5)
    expect(status == 200 and body == later, "registry back: misses work again", 200, status)


def test_concurrent_misses_one_transfer(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    data = os.urandom(5 * 1024 * 1024)
    n1.put("big/five.bin", data)
    n1.import_ns()
    before = n1.stats()["files_served"]

    def one(_):
        return n3.get("/big/five.bin", timeout=60)
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        results = list(ex.map(one, range(32)))
    statuses = sorted(set(s for s, _ in results))
    expect(statuses == [200], "32 concurrent GETs all 200", [200], statuses)
    digests = set(sha(b) for _, b in results)
    expect(digests == {sha(data)}, "all 32 bodies identical to the original",
           sha(data), digests)
    served = n1.stats()["files_served"] - before
    expect(served == 1, "exactly one peer transfer for 32 concurrent misses", 1, served)
    expect(n3.temp_files() == [], "no temporary files left", [], n3.temp_files())


def test_concurrent_processes_one_transfer(c):
    """64 separate processes (not nginx) miss the same file at once."""
    n1, n2 = c.nodes[0], c.nodes[1]
    data = os.urandom(2 * 1024 * 1024)
    n1.put("procs/shared.bin", data)
    n1.import_ns()
    before = n1.stats()["files_served"]
    target = os.path.join(n2.dir, "procs/shared.bin")
    procs = [subprocess.Popen([os.path.join(BUILD, "tests/preload/misses"), "--cat", target],
                              env=n2.env(preload=True), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(64)]
    outs = [p.communicate(timeout=60) for p in procs]
    bad = [p.returncode for p in procs if p.returncode != 0]
    expect(not bad, "64 processes all read the file", [], bad)
    expect(set(sha(o) for o, _ in outs) == {sha(data)}, "64 identical reads")
    expect(n1.stats()["files_served"] - before == 1, "exactly one transfer for 64 processes",
           1, n1.stats()["files_served"] - before)
    expect(n2.temp_files() == [], "no temporary files left", [], n2.temp_files())


def test_peer_requests_refused(c):
    n1 = c.nodes[0]
    n1.put("secret/ok.txt", b"fine\n")
    os.symlink("/etc/passwd", os.path.join(n1.dir, "secret/link"))
    good = "/v1/files/img/secret/ok.txt"
    status, body = n1.signed("GET", good)
    expect(status == 200 and body == b"fine\n", "a signed request is served", 200, status)
    expect(n1.signed("GET", good, sig=False)[0] == 401, "unsigned -> 401")
    expect(n1.signed("GET", good, sig="0" * 64)[0] == 401, "forged signature -> 401")
    expect(n1.signed("GET", good, secret="wrong")[0] == 401, "wrong secret -> 401")
    expect(n1.signed("GET", good, when=int(time.time()) - 3600)[0] == 401, "stale -> 401")
    expect(n1.signed("GET", "/v1/files/img/secret/other.txt", raw=good)[0] == 401,
           "signature for another path -> 401")
    attacks = [
        ("/v1/files/img/../../../../etc/passwd", None),
        ("/v1/files/img/secret/../../../etc/passwd", None),
        ("/v1/files/img/x/../../etc/passwd", None),
        ("/v1/files/img/../etc/passwd", "/v1/files/img/%2e%2e/etc/passwd"),
        ("/v1/files/img/..%2Fetc%2Fpasswd", "/v1/files/img/..%2Fetc%2Fpasswd"),
        ("/v1/files/img/ok.txt%00.jpg", "/v1/files/img/ok.txt%00.jpg"),
        ("/v1/files/img/secret/link", None),
        ("/v1/files/img//etc/passwd", None),
        ("/v1/files/img/" + "a/" * 3000 + "x", None),
    ]
    for path, raw in attacks:
        status, body = n1.signed("GET", path, raw=raw if raw else path)
        expect(status in (400, 404) and b"root:" not in body,
               "traversal refused: %s" % (raw or path)[:80], "400/404", (status, body[:60]))
    expect(n1.signed("PATCH", good)[0] == 405, "PATCH not allowed -> 405")
    status, body = n1.signed("GET", good)
    expect(status == 200, "still serving after the attacks")


def test_range(c):
    n1 = c.nodes[0]
    data = bytes(range(256)) * 40
    n1.put("range.bin", data)
    import http.client
    path = "/v1/files/img/range.bin"
    for rng, want_status, want in [("bytes=10-19", 206, data[10:20]),
                                   ("bytes=-5", 206, data[-5:]),
                                   ("bytes=10000-", 206, data[10000:]),
                                   ("bytes=99999-", 416, b""),
                                   ("bytes=1-2,5-6", 200, data)]:
        when = int(time.time())
        sig = c.signature("GET", path, when, target=n1.url)
        conn = http.client.HTTPConnection("127.0.0.1", n1.serve_port, timeout=10)
        conn.request("GET", path, headers={"X-CS-Time": str(when), "X-CS-Signature": sig,
                                           "Range": rng})
        r = conn.getresponse()
        body = r.read()
        conn.close()
        expect(r.status == want_status and body == want, "Range %s" % rng,
               (want_status, len(want)), (r.status, len(body)))


def test_plain_programs_every_entry_point(c):
    """Not nginx: a program calling each wrapped libc function in turn, and
    cat/sha256sum, read files their node never had."""
    n1, n2 = c.nodes[0], c.nodes[1]
    prog = os.path.join(BUILD, "tests/preload/entrypoints")
    names = subprocess.run([prog, "--list"], capture_output=True, text=True,
                           check=True).stdout.split()
    for name in names:
        n1.put(name, (name + "\n").encode())
    n1.import_ns()
    p = n2.run([prog, n2.dir])
    out = p.stdout.decode()
    expect(p.returncode == 0, "every entry point fetches a missing file:\n" + out
           + p.stderr.decode()[-2000:])
    if os.environ.get("B", "build") == "build":
        # Debian's own binaries (skipped with the sanitizer runtime, which
        # deadlocks at exit in p11-kit for programs that call setlocale).
        data = os.urandom(3000)
        n1.put("tools/viacat.bin", data)
        n1.import_ns()
        p = n2.run(["sha256sum", os.path.join(n2.dir, "tools/viacat.bin")])
        expect(p.returncode == 0 and p.stdout.decode().split()[0] == sha(data),
               "sha256sum reads a file its node never had", sha(data), p.stdout)


def test_fork_after_connecting(c):
    """A host that forks after the library connected (nginx master, Apache
    prefork): children make their own connections, the parent keeps its."""
    n1, n3 = c.nodes[0], c.nodes[2]
    names = ["fork/%s.bin" % w for w in ("before", "child", "after", "child2")]
    blobs = {}
    for name in names:
        blobs[name] = os.urandom(4096)
        n1.put(name, blobs[name])
    n1.import_ns()
    p = n3.run([os.path.join(BUILD, "tests/preload/forkmiss")]
               + [os.path.join(n3.dir, n) for n in names])
    out = p.stdout.decode() + p.stderr.decode()
    expect(p.returncode == 0, "parent, children and parent again all fetch:\n" + out)
    for name in names:
        with open(os.path.join(n3.dir, name), "rb") as f:
            expect(f.read() == blobs[name], "%s has the right bytes" % name)
    # Holder records are written in the background, from the agent's journal.
    def rows():
        return c.sql("SELECT COUNT(*) FROM replicas r JOIN nodes n ON n.id=r.node_id "
                     "JOIN files f ON f.id=r.file_id WHERE n.name='node3' AND f.path LIKE"
                     " 'fork/%'", db="cs").stdout.strip()
    eventually(lambda: rows() == "4", 10)
    expect(rows() == "4", "every fetch recorded node3 as a holder, from parent and children",
           "4", rows())


def test_status_and_import_report(c):
    n1 = c.nodes[0]
    # Earlier tests stop nodes and leave files short of copies: status may
    # say so (exit 1, reasons on stderr), and lists every node either way.
    p = n1.cs("status", check=False)
    expect(p.returncode == 0 or (p.returncode == 1 and p.stderr.strip()),
           "status exits 0, or 1 with its reasons", 0, (p.returncode, p.stderr))
    for node in c.nodes:
        expect(node.name in p.stdout, "status lists %s" % node.name, node.name, p.stdout)
    expect(" up " in p.stdout, "status shows nodes up", "up", p.stdout)
    n1.put("conflict.txt", b"one\n")
    n1.import_ns()
    c.nodes[1].put("conflict.txt", b"two\n")
    p = c.nodes[1].cs("import", "img", check=False)
    expect(p.returncode == 1 and "conflict.txt" in p.stderr,
           "import names a path whose registered content differs, exits 1",
           "exit 1 naming conflict.txt", (p.returncode, p.stderr[-300:]))
    p = n1.cs("import", "nope", check=False)
    expect(p.returncode == 2 and "nope" in p.stderr, "import of an unknown namespace: exit 2",
           2, (p.returncode, p.stderr))


TESTS = [
    test_miss_fetch_served,
    test_nested_directories,
    test_absent_is_404,
    test_create_after_404,
    test_holder_down_other_holder_serves,
    test_dead_holder_read_from_last,
    test_concurrent_misses_one_transfer,
    test_concurrent_processes_one_transfer,
    test_peer_requests_refused,
    test_range,
    test_plain_programs_every_entry_point,
    test_fork_after_connecting,
    test_status_and_import_report,
    test_registry_down,
]


def main():
    return run(TESTS, Cluster(nodes=3), logs=("serve.log", "nginx-error.log"))


if __name__ == "__main__":
    sys.exit(main())
