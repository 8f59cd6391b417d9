"""tap.py - what every integration suite shares besides the cluster: expect()
and the runner, which prints "ok N - name" / "not ok N - name" lines (a
failure with what was expected and what came, and the last lines of each
node's logs) and the closing "N passed, N failed" that tests/run counts;
and the small helpers the suites all use (waiting, hashing, copies).
"""
import hashlib
import os
import sys
import time
import traceback


class Fail(Exception):
    pass


def expect(cond, what, want=None, got=None):
    if not cond:
        msg = what
        if want is not None or got is not None:
            msg += "\n  expected: %r\n  got:      %r" % (want, got)
        raise Fail(msg)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def file_sha(path):
    """sha256 of the file at path, or None where there is none."""
    try:
        with open(path, "rb") as f:
            return sha(f.read())
    except (FileNotFoundError, NotADirectoryError):
        return None


def eventually(pred, timeout=20, step=0.1):
    """pred()'s first true value within timeout seconds, else its last."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def mkdir_web(node, rel):
    """Directory rel in node's namespace directory, made where missing and
    owned (with every directory between) by the web user (Node.mkdir)."""
    return node.mkdir(rel)


def copies(c, rel):
    """sha256 of rel on each node's disk (None where absent)."""
    return [file_sha(os.path.join(n.dir, rel)) for n in c.nodes]


def replicated(c, rels, want=2):
    """True when each rel is on >= want nodes with one and the same content."""
    for rel in rels:
        got = [h for h in copies(c, rel) if h]
        if len(got) < want or len(set(got)) != 1:
            return False
    return True


def drain(node, timeout=60):
    """cs-replicate drain on node, which must succeed."""
    p = node.cs("drain", "--timeout", str(timeout), check=False, timeout=timeout + 30)
    expect(p.returncode == 0, "cs-replicate drain on %s exits 0" % node.name, 0,
           (p.returncode, p.stdout, p.stderr))


def node_logs(c, logs):
    """(node, log, path) for each of logs that each node has written."""
    for node in c.nodes:
        for log in logs:
            path = os.path.join(node.home, log)
            if os.path.exists(path):
                yield node, log, path


def run(tests, cluster, logs=("serve.log",)):
    """Run each test (a function of the cluster) in one started cluster; the
    command line may name a subset.  Returns the exit status."""
    only = sys.argv[1:]
    passed = failed = 0
    with cluster as c:
        for i, t in enumerate(tests, 1):
            if only and t.__name__ not in only:
                continue
            start = time.monotonic()
            try:
                t(c)
                passed += 1
                print("ok %d - %s (%.1fs)" % (i, t.__name__, time.monotonic() - start), flush=True)
            except Exception as e:
                failed += 1
                print("not ok %d - %s" % (i, t.__name__), flush=True)
                detail = str(e) if isinstance(e, Fail) else traceback.format_exc()
                for line in detail.splitlines():
                    print("#   " + line, flush=True)
                for node, log, path in node_logs(c, logs):
                    tail = open(path, errors="replace").read().splitlines()[-5:]
                    for line in tail:
                        print("#   %s/%s: %s" % (node.name, log, line))
        # In the sanitizer pass a report may come from a process no test
        # looked at after it (an agent stopping, a worker exiting): stop
        # every node's servers first, so what they print at exit is read.
        for node in c.nodes:
            node.stop_nginx()
            node.stop_apache()
            node.stop_serve()
        for node, log, path in node_logs(c, logs):
            found = [line for line in open(path, errors="replace").read().splitlines()
                     if "Sanitizer" in line or ": runtime error:" in line]
            if found:
                failed += 1
                print("not ok - sanitizer reports in %s/%s" % (node.name, log), flush=True)
                for line in found[:10]:
                    print("#   " + line)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
