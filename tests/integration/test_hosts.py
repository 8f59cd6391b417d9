"""test_hosts.py - real Apache httpd 2.4 as a host under the library, as a
user sees it: the event MPM serving static files, and the prefork MPM with
mod_php (PHP 8.2) reading, writing and probing files.  Real memcached,
MariaDB, three nodes each with cs-replicate serve; the Apache master runs
as root under LD_PRELOAD=libcs.so with only the host's environment, its
children as www-data.

Each test uses its own file names; a test that stops a server starts it
again.  Prints TAP-style lines and ends with "N passed, N failed".
"""
import hashlib
import http.client
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402
from tap import (expect, run, copies, drain, eventually, file_sha, mkdir_web,  # noqa: E402
                 replicated, sha)

REPLICAS = 2


def apache(node, mpm, php=False):
    """The node's Apache with this MPM (and mod_php or not), started once
    and kept while the tests that follow want the same."""
    if node.apache is None or node.apache.poll() is not None or node.apache_mode != (mpm, php):
        node.start_apache(mpm=mpm, php=php)
    return node


def raw_get(node, path):
    """GET from the node's Apache: status, Location header, body."""
    conn = http.client.HTTPConnection("127.0.0.1", node.apache_port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Location"), r.read()
    finally:
        conn.close()


def php(node, rel, source):
    """A PHP script put straight into the node's directory (the application's
    code, not a cluster file), owned by the web user."""
    node.put(rel, source.encode())
    return "/" + rel


# ---- tests -------------------------------------------------------------

def test_event_static_miss_hit_404(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    apache(n3, "event")
    data = os.urandom(200 * 1024)
    n1.put("ev/static/photo.jpg", data)
    n1.import_ns()
    before = n1.stats()["files_served"]
    status, body = n3.get_apache("/ev/static/photo.jpg")
    expect(status == 200, "node3's Apache serves a file only node1 had", 200, status)
    expect(sha(body) == sha(data), "bytes identical", sha(data), sha(body))
    expect(file_sha(os.path.join(n3.dir, "ev/static/photo.jpg")) == sha(data),
           "file installed on node3")
    expect(n1.stats()["files_served"] == before + 1, "one transfer from node1",
           before + 1, n1.stats()["files_served"])
    status, body = n3.get_apache("/ev/static/photo.jpg")
    expect(status == 200 and body == data, "second GET still served", 200, status)
    expect(n1.stats()["files_served"] == before + 1,
           "second GET is a local hit: no further transfer",
           before + 1, n1.stats()["files_served"])
    for attempt in range(2):
        status, _ = n3.get_apache("/ev/static/no-such-photo.jpg")
        expect(status == 404, "a path no node has -> 404 (attempt %d)" % attempt, 404, status)
        status, _ = n3.get_apache("/ev/nowhere/at/all.jpg")
        expect(status == 404, "a path under a directory no node has -> 404 (attempt %d)"
               % attempt, 404, status)
    expect(not os.path.exists(os.path.join(n3.dir, "ev/nowhere")),
           "nothing created for a 404")


def test_event_directory_index(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    apache(n3, "event")
    html = b"<html><body>docs " + os.urandom(8).hex().encode() + b"</body></html>\n"
    n1.put("site/docs/index.html", html)
    n1.import_ns()
    expect(not os.path.exists(os.path.join(n3.dir, "site")), "node3 lacks the directory")
    status, location, _ = raw_get(n3, "/site/docs")
    expect(status == 301, "GET /site/docs on node3 -> 301", 301, status)
    expect(location is not None and location.endswith("/site/docs/"),
           "redirect to /site/docs/", "/site/docs/", location)
    expect(os.path.isdir(os.path.join(n3.dir, "site/docs")),
           "the directory was made on node3")
    status, _, body = raw_get(n3, "/site/docs/")
    expect(status == 200 and body == html, "GET /site/docs/ -> 200 with index.html (DirectoryIndex)",
           (200, html), (status, body[:200]))


def test_php_reads_and_writes(c):
    n1, n2, n3 = c.nodes
    apache(n3, "prefork", php=True)
    data = os.urandom(300 * 1024)
    n1.put("phpr/data.bin", data)
    n1.import_ns()
    url = php(n3, "app-rw/read.php", """<?php
$b = file_get_contents('%s/phpr/data.bin');
echo $b === false ? 'false' : sha1($b);
""" % n3.dir)
    status, body = n3.get_apache(url)
    expect(status == 200 and body.decode() == hashlib.sha1(data).hexdigest(),
           "file_get_contents of a file only node1 had: right sha1",
           (200, hashlib.sha1(data).hexdigest()), (status, body[:300]))

    mkdir_web(n3, "phpw")
    url = php(n3, "app-rw/upload.php", """<?php
$d = '%s/phpw';
$data = str_repeat("uploaded by php ", 4096) . bin2hex(random_bytes(32));
if (file_put_contents("$d/.upload-" . getmypid() . ".tmp", $data) === false) { http_response_code(500); exit; }
if (!rename("$d/.upload-" . getmypid() . ".tmp", "$d/photo.jpg")) { http_response_code(500); exit; }
echo hash('sha256', $data);
""" % n3.dir)
    status, body = n3.get_apache(url)
    expect(status == 200 and len(body) == 64, "the upload script ran", 200, (status, body[:300]))
    want = body.decode()
    expect(file_sha(os.path.join(n3.dir, "phpw/photo.jpg")) == want, "written on node3")
    drain(n3)
    ok = eventually(lambda: replicated(c, ["phpw/photo.jpg"], REPLICAS), 20, 0.2)
    expect(ok, "the uploaded file is on >= %d nodes with identical bytes" % REPLICAS,
           want, copies(c, "phpw/photo.jpg"))
    expect(all(h in (None, want) for h in copies(c, "phpw/photo.jpg")),
           "every copy has the uploaded bytes", want, copies(c, "phpw/photo.jpg"))
    temps = [os.path.join(n.name, f) for n in c.nodes if os.path.isdir(os.path.join(n.dir, "phpw"))
             for f in os.listdir(os.path.join(n.dir, "phpw")) if f.endswith(".tmp")]
    expect(not temps, "no temporary name left on any node", [], temps)
    p = n1.run(["sha256sum", os.path.join(n1.dir, "phpw/photo.jpg")])
    expect(p.returncode == 0 and p.stdout.decode().split()[0] == want,
           "node1 reads the uploaded file", want, (p.returncode, p.stdout, p.stderr[-500:]))


def test_php_directory_probes(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    apache(n3, "prefork", php=True)
    for rel in ("phpd/gallery/a.jpg", "phpd/gallery/b.jpg", "phpd/listed/c.jpg"):
        n1.put(rel, os.urandom(2000))
    n1.import_ns()
    expect(not os.path.exists(os.path.join(n3.dir, "phpd")), "node3 lacks the directories")
    url = php(n3, "app-dirs/probe.php", """<?php
$d = '%s/phpd';
$r = [];
$r[] = is_dir("$d/gallery") ? 'is_dir' : 'not_dir';
$r[] = file_exists("$d/gallery/a.jpg") ? 'exists' : 'missing';
$r[] = is_file("$d/gallery/b.jpg") ? 'is_file' : 'not_file';
$r[] = file_exists("$d/gallery/zzz.jpg") ? 'zzz_exists' : 'zzz_missing';
$l = scandir("$d/listed");
$r[] = $l === false ? 'scandir_false' : 'scandir_ok';
$r[] = is_dir("$d/nothing-here") ? 'bogus_dir' : 'no_bogus_dir';
echo implode(' ', $r);
""" % n3.dir)
    status, body = n3.get_apache(url)
    want = "is_dir exists is_file zzz_missing scandir_ok no_bogus_dir"
    expect(status == 200 and body.decode() == want,
           "is_dir/file_exists/is_file/scandir on directories node3 lacked",
           want, (status, body[:500]))
    expect(os.path.isdir(os.path.join(n3.dir, "phpd/gallery")), "phpd/gallery made on node3")
    expect(os.path.isdir(os.path.join(n3.dir, "phpd/listed")), "phpd/listed made on node3")
    expect(not os.path.exists(os.path.join(n3.dir, "phpd/nothing-here")),
           "no directory made for a name the cluster lacks")
    status, body = n3.get_apache(url)
    expect(status == 200 and body.decode() == want, "the same answers a second time",
           want, (status, body[:500]))


def test_prefork_404_and_holder_down(c):
    """A path no node has is 404; a file whose only holder is down is never
    a 404.  Apache turns any error of its request walk's stat() other than
    "not found" into 403 (AH00036, ap_directory_walk), so the library's EIO
    is a 403 here (nginx answers 500); PHP sees the EIO itself."""
    n1, n3 = c.nodes[0], c.nodes[2]
    apache(n3, "prefork", php=True)
    for attempt in range(2):
        status, _ = n3.get_apache("/pf/none/such.jpg")
        expect(status == 404, "a path no node has -> 404 (attempt %d)" % attempt, 404, status)
    data = os.urandom(20000)
    n1.put("pf/only/one.jpg", data)
    n1.import_ns()
    n1.stop_serve()
    try:
        for attempt in range(2):
            status, _ = n3.get_apache("/pf/only/one.jpg")
            expect(status != 404, "a file whose only holder's agent is down is never a 404"
                   " (attempt %d)" % attempt, "not 404", status)
            expect(status == 403, "a file whose only holder's agent is down -> Apache's 403"
                   " for a failed stat (attempt %d)" % attempt, 403, status)
        log = open(os.path.join(n3.home, "apache-error.log"), errors="replace").read()
        expect("(5)Input/output error" in log, "Apache logs the EIO", "EIO in the log",
               log[-500:])
    finally:
        n1.start_serve()
    status, body = eventually(lambda: (lambda r: r if r[0] == 200 else None)(
        n3.get_apache("/pf/only/one.jpg")), 15, 0.3) or (None, None)
    expect(status == 200 and body == data, "served once the holder is back", 200, status)


TESTS = [
    test_event_static_miss_hit_404,
    test_event_directory_index,
    test_php_reads_and_writes,
    test_php_directory_probes,
    test_prefork_404_and_holder_down,
]


def main():
    return run(TESTS, Cluster(nodes=3, nginx=False,
                              extra_env={"CS_REPLICAS": str(REPLICAS)},
                              log_level=os.environ.get("CS_TEST_LOG", "warn")),
               logs=("serve.log", "apache-error.log"))


if __name__ == "__main__":
    sys.exit(main())
