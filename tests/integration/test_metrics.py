"""test_metrics.py - the agent's GET /metrics as a monitoring system sees it:
public and read-only, strictly in Prometheus's text format, and counting
what the nodes did: misses and their answers, the time they took, the
bytes peers fetched, registry and peer failures, the journal backlog and
the replication lag; and showing no path, file name or secret.

Real memcached, MariaDB and two nodes, each with cs-replicate serve and
nginx under the library.  Each test uses its own file names; a test that
stops a server starts it again.  Prints TAP-style lines and ends with
"N passed, N failed".
"""
import hashlib
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402
from tap import expect, run, eventually  # noqa: E402

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ---- the text format, parsed strictly -----------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(\{.*\})? (\S+)( -?\d+)?$" % NAME)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|\})')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_labels(text):
    """{...} -> a sorted tuple of (name, value), escapes undone."""
    labels, pos = [], 1
    if text == "{}":
        return ()
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError("bad labels %r" % text)
        value = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2))
        labels.append((m.group(1), value))
        pos = m.end()
        if m.group(3) == "}":
            if pos != len(text):
                raise ValueError("text after labels %r" % text)
            break
    names = [k for k, _ in labels]
    if len(set(names)) != len(names):
        raise ValueError("a label twice in %r" % text)
    return tuple(sorted(labels))


def parse_value(s):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", s):
        raise ValueError("bad value %r" % s)
    return float(s)


def parse(body):
    """The samples of an exposition in text format 0.0.4, as {(name,
    labels): value}; raises ValueError on anything out of the format:
    every line a comment or a sample, every family's HELP and TYPE before
    its samples, a family's samples together, histograms' buckets
    cumulative up to +Inf == _count."""
    text = body.decode("utf-8")
    if not text.endswith("\n"):
        raise ValueError("does not end with a newline")
    helps, types, samples = {}, {}, {}
    order, current = [], None
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            if not m:
                continue                    # any other comment is allowed
            kind, name, rest = m.groups()
            table = helps if kind == "HELP" else types
            if name in table:
                raise ValueError("%s %s twice" % (kind, name))
            if name in order:
                raise ValueError("%s %s after its samples" % (kind, name))
            if kind == "TYPE" and rest not in TYPES:
                raise ValueError("unknown type %r" % line)
            table[name] = rest
            continue
        if not line:
            raise ValueError("empty line")
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("not a sample: %r" % line)
        name, labels, value = m.group(1), parse_labels(m.group(2) or "{}"), parse_value(m.group(3))
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and types.get(base) == "histogram":
                family = base
        if family not in helps or family not in types:
            raise ValueError("sample %r of a family without HELP and TYPE" % line)
        if family != current:
            if family in order:
                raise ValueError("family %s's samples are not together" % family)
            order.append(family)
            current = family
        if (name, labels) in samples:
            raise ValueError("sample twice: %r" % line)
        if types[family] == "counter" and not value >= 0:
            raise ValueError("negative counter: %r" % line)
        samples[(name, labels)] = value
    for family, kind in types.items():
        if kind == "histogram":
            check_histogram(family, samples)
    return samples


def check_histogram(family, samples):
    groups = {}
    for (name, labels), v in samples.items():
        if name == family + "_bucket":
            le = dict(labels).get("le")
            if le is None:
                raise ValueError("bucket without le in %s" % family)
            rest = tuple(l for l in labels if l[0] != "le")
            groups.setdefault(rest, []).append((parse_value(le), v))
    if not groups:
        raise ValueError("histogram %s has no buckets" % family)
    for rest, buckets in groups.items():
        buckets.sort()
        if buckets[-1][0] != math.inf:
            raise ValueError("%s has no +Inf bucket" % family)
        counts = [v for _, v in buckets]
        if counts != sorted(counts):
            raise ValueError("%s buckets decrease: %r" % (family, buckets))
        count = samples.get((family + "_count", rest))
        if count != buckets[-1][1]:
            raise ValueError("%s: +Inf %r != _count %r" % (family, buckets[-1][1], count))
        if (family + "_sum", rest) not in samples:
            raise ValueError("%s has no _sum" % family)


def value(samples, name, **labels):
    """A sample's value, 0 when it has no line (nothing counted yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0)


# ---- talking to /metrics ---------------------------------------------------

def ask(node, method="GET", path="/metrics", body=None, headers=None):
    """An unsigned request: (status, headers as a dict, body, closed)."""
    conn = node.connection(10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        try:
            conn.endheaders(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data, r.will_close
    finally:
        conn.close()


def scrape(node):
    status, hdrs, body, _ = ask(node)
    if status != 200:
        raise RuntimeError("GET /metrics on %s: HTTP %d %r" % (node.name, status, body[:200]))
    return parse(body)


def quiet(samples):
    """What a request to /metrics itself may not change: all but the
    request counters."""
    return {k: v for k, v in samples.items() if not k[0].startswith("cs_http_")}


def settle(c):
    """Every node's journals replicated, so no background work is under way."""
    for n in c.nodes:
        expect(eventually(lambda: value(scrape(n), "cs_journal_backlog") == 0, 30),
               "%s has no journal backlog" % n.name)


def cat(node, rel):
    return node.run(["cat", os.path.join(node.dir, rel)])


# ---- tests -------------------------------------------------------------

def test_scrape_unsigned_parses(c):
    """GET /metrics without a signature: 200, Prometheus's content type,
    the connection closed, and a body that parses strictly with every
    family the issue names; HEAD the same without a body."""
    n1 = c.nodes[0]
    status, hdrs, body, closed = ask(n1)
    expect(status == 200, "unsigned GET /metrics is answered", 200, (status, body[:200]))
    expect(hdrs.get("content-type") == CONTENT_TYPE, "its content type", CONTENT_TYPE,
           hdrs.get("content-type"))
    expect(closed, "the connection is closed after it, as for any unsigned request")
    try:
        m = parse(body)
    except ValueError as e:
        raise AssertionError("the body parses as Prometheus text 0.0.4: %s\n%s" % (e, body[:2000]))
    want = ["cs_misses_total", "cs_miss_installed_total", "cs_miss_absent_total",
            "cs_miss_unavailable_total", "cs_registry_errors_total", "cs_peer_errors_total",
            "cs_journal_backlog", "cs_fetch_seconds_count", "cs_replication_lag_seconds_count",
            "cs_repair_copies_total", "cs_verify_files_total"]
    names = {k[0] for k in m}
    expect(not [w for w in want if w not in names], "every family is there", want,
           sorted(names))
    status, hdrs, head_body, _ = ask(n1, "HEAD")
    expect((status, head_body) == (200, b""), "HEAD /metrics: 200, no body", 200,
           (status, head_body[:100]))
    expect(hdrs.get("content-type") == CONTENT_TYPE, "HEAD: the same content type")
    # A scrape shows the requests answered before it: the GET and the HEAD.
    m = scrape(n1)
    got = (value(m, "cs_http_requests_total", route="metrics", method="GET", code="2xx"),
           value(m, "cs_http_requests_total", route="metrics", method="HEAD", code="2xx"))
    expect(got == (1, 1), "the GET and the HEAD of /metrics were counted", (1, 1), got)


def test_metrics_is_read_only(c):
    """POST, PUT, DELETE and PATCH /metrics, with a body or without, signed
    or not: 405 with Allow: GET, HEAD, the connection closed, and nothing
    the metrics show has changed."""
    n1 = c.nodes[0]
    settle(c)
    before = scrape(n1)
    listing = sorted(os.listdir(n1.dir))
    for method, body in (("POST", b"x=1"), ("PUT", b"cs_misses_total 0\n"), ("DELETE", None),
                         ("PATCH", b"{}"), ("POST", None)):
        status, hdrs, text, closed = ask(n1, method, body=body)
        expect(status == 405, "%s /metrics: 405" % method, 405, (status, text[:200]))
        expect(hdrs.get("allow") == "GET, HEAD", "%s /metrics: Allow: GET, HEAD" % method,
               "GET, HEAD", hdrs.get("allow"))
        expect(closed, "%s /metrics: the connection is closed" % method)
    status, _ = n1.signed("PUT", "/metrics", body=b"x", body_sha=hashlib.sha256(b"x").hexdigest())
    expect(status == 405, "a signed PUT /metrics: 405 too", 405, status)
    after = scrape(n1)
    expect(quiet(after) == quiet(before), "nothing the metrics show changed",
           None, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                  if not k[0].startswith("cs_http_") and before.get(k) != after.get(k)})
    expect(sorted(os.listdir(n1.dir)) == listing, "nothing appeared in the namespace")
    refused = value(after, "cs_http_requests_total", route="metrics", method="PUT", code="4xx")
    expect(refused == 2, "the refusals are counted under 4xx", 2, refused)


def test_miss_counts(c):
    """Three misses on node2 for files only node1 has: node2's misses,
    installed answers and fetch-time observations go up by three, and
    node1's files GET requests by three and its bytes sent by the files'
    sizes."""
    n1, n2 = c.nodes
    sizes = [1000, 23456, 70001]
    data = {}
    for i, size in enumerate(sizes):
        rel = "mc-%d.bin" % i
        data[rel] = os.urandom(size)
        n1.put(rel, data[rel])
    n1.import_ns()
    settle(c)
    a1, a2 = scrape(n1), scrape(n2)
    for rel, want in data.items():
        p = cat(n2, rel)
        expect(p.returncode == 0 and p.stdout == want, "node2 read %s, a miss" % rel)
    b1, b2 = scrape(n1), scrape(n2)

    def up(b, a, name, **labels):
        return value(b, name, **labels) - value(a, name, **labels)
    got = {k: up(b2, a2, k) for k in ("cs_misses_total", "cs_miss_installed_total",
                                      "cs_fetch_seconds_count", "cs_miss_absent_total",
                                      "cs_miss_unavailable_total")}
    want = {"cs_misses_total": 3, "cs_miss_installed_total": 3, "cs_fetch_seconds_count": 3,
            "cs_miss_absent_total": 0, "cs_miss_unavailable_total": 0}
    expect(got == want, "node2 counted three misses, installed, each timed", want, got)
    took = up(b2, a2, "cs_fetch_seconds_sum")
    expect(0 < took < 30, "the three took some time", "0 < s < 30", took)
    served = up(b1, a1, "cs_http_requests_total", route="files", method="GET", code="2xx")
    sent = up(b1, a1, "cs_http_bytes_total", route="files", method="GET")
    expect((served, sent) == (3, sum(sizes)), "node1 served three files GETs of their sizes",
           (3, sum(sizes)), (served, sent))


def test_indexed_but_unregistered_is_absent(c):
    """A name announced to node2's index that the registry never had: the
    host asks, and node2 counts a miss answered absent."""
    n2 = c.nodes[1]
    rel = "never-registered-%d.bin" % os.getpid()
    body = ("%s\t%s\n" % (c.namespace, rel)).encode()
    status, _ = n2.signed("POST", "/v1/index", body=body,
                          body_sha=hashlib.sha256(body).hexdigest(),
                          headers={"X-CS-SHA256": hashlib.sha256(body).hexdigest()})
    expect(status == 200, "the name is announced to node2", 200, status)
    a = scrape(n2)
    p = cat(n2, rel)
    expect(p.returncode != 0 and b"No such file" in p.stderr, "cat: No such file", "ENOENT",
           p.stderr)
    b = scrape(n2)
    got = (value(b, "cs_misses_total") - value(a, "cs_misses_total"),
           value(b, "cs_miss_absent_total") - value(a, "cs_miss_absent_total"))
    expect(got == (1, 1), "one miss, answered absent", (1, 1), got)
    received = value(b, "cs_http_bytes_total", route="index", method="POST")
    expect(received >= len(body), "the announcement's bytes were counted as received",
           ">= %d" % len(body), received)


def test_registry_down_is_unavailable(c):
    """MariaDB stopped and memcached empty: a miss on node2 is answered
    unavailable (EIO), and node2 counts it and its registry errors."""
    n1, n2 = c.nodes
    n1.put("down/reg.bin", os.urandom(3000))
    n1.import_ns()
    settle(c)
    c.memcached("flush_all")
    a = scrape(n2)
    c.stop_mariadb()
    try:
        p = cat(n2, "down/reg.bin")
        expect(p.returncode != 0 and b"Input/output error" in p.stderr,
               "cat with the registry down: Input/output error", "EIO", p.stderr)
        b = scrape(n2)
    finally:
        c.start_mariadb()
    got = {k: value(b, k) - value(a, k) for k in
           ("cs_misses_total", "cs_miss_unavailable_total", "cs_miss_installed_total")}
    want = {"cs_misses_total": 1, "cs_miss_unavailable_total": 1, "cs_miss_installed_total": 0}
    expect(got == want, "one miss, answered unavailable", want, got)
    errors = value(b, "cs_registry_errors_total") - value(a, "cs_registry_errors_total")
    expect(errors >= 1, "registry errors counted", ">= 1", errors)
    expect(eventually(lambda: cat(n2, "down/reg.bin").returncode == 0, 30),
           "the miss works once MariaDB is back")


def test_holder_down_is_a_peer_error(c):
    """The only holder's agent stopped: a miss on node2 is unavailable, and
    node2 counts the failed transfer as a peer error."""
    n1, n2 = c.nodes
    n1.put("peer/only.bin", os.urandom(4000))
    n1.import_ns()
    settle(c)
    a = scrape(n2)
    n1.stop_serve()
    try:
        p = cat(n2, "peer/only.bin")
        expect(p.returncode != 0, "cat fails with the holder down", "non-zero", p.returncode)
        b = scrape(n2)
    finally:
        n1.start_serve()
    got = value(b, "cs_peer_errors_total") - value(a, "cs_peer_errors_total")
    expect(got >= 1, "the failed fetch is a peer error", ">= 1", got)
    expect(value(b, "cs_miss_unavailable_total") - value(a, "cs_miss_unavailable_total") == 1,
           "and the miss was answered unavailable")


def test_write_backlog_and_lag(c):
    """A write on node1 while MariaDB is stopped waits in node1's backlog;
    once MariaDB is back it is replicated, and node1 observes its lag, at
    least as long as the wait."""
    n1 = c.nodes[0]
    settle(c)
    a = scrape(n1)
    c.stop_mariadb()
    try:
        p = n1.run(["sh", "-c", "echo lagging > %s/lag.txt" % n1.dir])
        expect(p.returncode == 0, "the write ran", 0, p.stderr)
        expect(eventually(lambda: value(scrape(n1), "cs_journal_backlog") >= 1, 10),
               "node1's backlog shows the waiting entry")
        time.sleep(1)
    finally:
        c.start_mariadb()
    expect(eventually(lambda: value(scrape(n1), "cs_journal_backlog") == 0, 30),
           "the backlog empties once MariaDB is back")
    b = scrape(n1)

    def up(name, **labels):
        return value(b, name, **labels) - value(a, name, **labels)
    count = up("cs_replication_lag_seconds_count")
    expect(count >= 1, "node1 observed the entry's replication lag", ">= 1", count)
    lag = up("cs_replication_lag_seconds_sum")
    expect(lag >= 1, "which lasted at least the second MariaDB was down", ">= 1 s", lag)
    slow = up("cs_replication_lag_seconds_bucket", le="+Inf") - \
        up("cs_replication_lag_seconds_bucket", le="0.5")
    expect(slow >= 1, "and it is counted above the 0.5 s bucket", ">= 1", slow)
    expect(eventually(lambda: c.nodes[1].get("/lag.txt") == (200, b"lagging\n"), 10),
           "the write reached node2")


def test_no_path_or_secret(c):
    """After all the above, neither node's metrics name a directory, a
    file, a namespace or any secret."""
    for n in c.nodes:
        status, _, body, _ = ask(n)
        expect(status == 200, "%s answers /metrics" % n.name)
        text = body.decode()
        leaks = [s for s in (c.tmp, n.dir, n.spool, c.secret, c.mysql_password, "mc-0.bin",
                             "never-registered", "lag.txt", "down/reg", "/v1/", n.url)
                 if s in text]
        expect(not leaks, "%s's metrics name no path, file or secret" % n.name, [], leaks)
        labels = {v for (_, ls) in parse(body) for _, v in ls}
        allowed = re.compile(r"^(files|index|stats|health|metrics|repair|other|GET|HEAD|PUT|POST"
                             r"|DELETE|[1-5]xx|[0-9.e+-]+|\+Inf)$")
        odd = sorted(v for v in labels if not allowed.match(v))
        expect(not odd, "every label value is a route, method, class or bound", [], odd)


def test_peer_routes_still_signed(c):
    """The public /metrics opens nothing else: an unsigned GET of a file
    or of /v1/stats is still 401, and counted as such."""
    n1 = c.nodes[0]
    a = scrape(n1)
    status, _, _, closed = ask(n1, path="/v1/files/%s/mc-0.bin" % c.namespace)
    expect((status, closed) == (401, True), "unsigned GET /v1/files/...: 401, closed", 401,
           status)
    expect(ask(n1, path="/v1/stats")[0] == 401, "unsigned GET /v1/stats: 401")
    expect(ask(n1, path="/metrics/")[0] == 401, "unsigned GET /metrics/ (no such route): 401")
    expect(n1.stats()["requests"] > 0, "signed /v1/stats still answers as before")
    b = scrape(n1)
    refused = value(b, "cs_http_requests_total", route="files", method="GET", code="4xx") - \
        value(a, "cs_http_requests_total", route="files", method="GET", code="4xx")
    expect(refused == 1, "the refused files GET is counted under 4xx", 1, refused)


if __name__ == "__main__":
    sys.exit(run([
        test_scrape_unsigned_parses,
        test_metrics_is_read_only,
        test_miss_counts,
        test_indexed_but_unregistered_is_absent,
        test_registry_down_is_unavailable,
        test_holder_down_is_a_peer_error,
        test_write_backlog_and_lag,
        test_no_path_or_secret,
        test_peer_routes_still_signed,
    ], Cluster(nodes=2, extra_env={"CS_REPLICAS": "2"})))
