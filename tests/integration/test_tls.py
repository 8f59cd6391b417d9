"""test_tls.py - TLS between nodes: three nodes whose CS_NODE_URL is
https://, each with its own certificate from the cluster's CA (made here
with openssl), CS_TLS_CA naming that CA.  Misses, pushes and announcements
go over TLS; a peer whose certificate another CA signed is refused, and so
is plain HTTP to a TLS port.  Real memcached, MariaDB, nginx under the
library.  Prints TAP-style lines and ends with "N passed, N failed".
"""
import http.client
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, WEB_USER  # noqa: E402
from tap import expect, run, eventually, file_sha, mkdir_web, replicated, sha  # noqa: E402

import pwd  # noqa: E402


def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr))


def make_ca(d, name):
    """A CA (key and certificate) in d: the certificate's path."""
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name)
    return crt


def make_cert(d, ca, name):
    """A certificate for 127.0.0.1 signed by ca (make_ca's): (cert, key)."""
    key, csr, crt = (os.path.join(d, name + x) for x in (".key", ".csr", ".crt"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca[:-4] + ".key",
            "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
    pw = pwd.getpwnam(WEB_USER)
    os.chown(key, pw.pw_uid, pw.pw_gid)
    os.chmod(key, 0o600)
    return crt, key


PKI = tempfile.mkdtemp(prefix="cs-pki.")
os.chmod(PKI, 0o755)
CA = make_ca(PKI, "cluster-ca")
OTHER_CA = make_ca(PKI, "other-ca")
CERTS = {}


def node_env(node):
    """Each node's agent: its own certificate and key, the cluster's CA."""
    if node.name not in CERTS:
        CERTS[node.name] = make_cert(PKI, CA, node.name)
    cert, key = CERTS[node.name]
    return {"CS_TLS_CERT": cert, "CS_TLS_KEY": key, "CS_TLS_CA": CA}


def test_miss_and_push_over_tls(c):
    """A file written on node1 is pushed over TLS and a node that lacks it
    fetches it over TLS: every node serves the same bytes."""
    n1 = c.nodes[0]
    mkdir_web(n1, "tls")
    data = os.urandom(200 * 1024)
    rel = "tls/a.bin"
    p = n1.run(["sh", "-c", 'cat > "$1"', "sh", os.path.join(n1.dir, rel)], input=data)
    expect(p.returncode == 0, "written", 0, p.stderr)
    expect(eventually(lambda: replicated(c, [rel], 2), 20), "pushed to a peer over TLS")
    for n in c.nodes:
        status, body = n.get("/" + rel)
        expect(status == 200 and sha(body) == sha(data), "%s serves it" % n.name, 200, status)
    stats = c.nodes[0].stats()
    expect(stats["requests"] > 0, "node1's endpoint answered signed requests over TLS")


def test_plain_http_and_unsigned_refused(c):
    """Plain HTTP to a TLS port gets no HTTP answer; over TLS, an unsigned
    request is still refused (401): TLS adds to the signature, it does not
    replace it."""
    n1 = c.nodes[0]
    conn = http.client.HTTPConnection("127.0.0.1", n1.serve_port, timeout=5)
    try:
        conn.request("GET", "/v1/health")
        status = conn.getresponse().status
    except (http.client.HTTPException, ConnectionError, OSError):
        status = None
    finally:
        conn.close()
    expect(status is None, "plain HTTP to the TLS port: no answer", None, status)
    status, _ = n1.signed("GET", "/v1/files/img/tls/a.bin", sig=False)
    expect(status == 401, "unsigned over TLS: 401", 401, status)


def test_peer_from_another_ca_refused(c):
    """node3 trusts another CA only: it refuses node1's and node2's
    certificates, so a miss on node3 fails (5xx, never another node's
    bytes unverified), and works again with the cluster's CA."""
    n1, n2, n3 = c.nodes
    mkdir_web(n1, "tls")
    rel = "tls/verified.bin"
    data = os.urandom(5000)
    n3.stop_serve()
    try:
        p = n1.run(["sh", "-c", 'cat > "$1"', "sh", os.path.join(n1.dir, rel)], input=data)
        expect(p.returncode == 0, "written", 0, p.stderr)
        expect(eventually(lambda: replicated(c, [rel], 2), 20), "on node1 and node2")
        n3.start_serve(CS_TLS_CA=OTHER_CA)
        status, _ = n3.get("/" + rel)
        expect(status >= 500, "a miss from peers the node cannot verify fails", "5xx", status)
        expect(file_sha(os.path.join(n3.dir, rel)) is None, "nothing installed")
        log = open(os.path.join(n3.home, "serve.log"), errors="replace").read()
        expect("certificate" in log.lower() or "SSL" in log, "the log says why",
               "certificate ...", log[-600:])
    finally:
        n3.stop_serve()
        n3.start_serve()
    status, body = n3.get("/" + rel)
    expect(status == 200 and sha(body) == sha(data), "with the cluster's CA it works", 200,
           status)


if __name__ == "__main__":
    try:
        rc = run([test_miss_and_push_over_tls,
                  test_plain_http_and_unsigned_refused,
                  test_peer_from_another_ca_refused],
                 Cluster(nodes=3, log_level="info", tls_ca=CA, node_env=node_env))
    finally:
        shutil.rmtree(PKI, ignore_errors=True)
    sys.exit(rc)
