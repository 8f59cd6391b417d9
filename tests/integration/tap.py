"""tap.py - what every integration suite shares besides the cluster: expect()
and the runner, which prints "ok N - name" / "not ok N - name" lines (a
failure with what was expected and what came, and the last lines of each
node's logs) and the closing "N passed, N failed" that tests/run counts.
"""
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
                for node in c.nodes:
                    for log in logs:
                        path = os.path.join(node.home, log)
                        if os.path.exists(path):
                            tail = open(path, errors="replace").read().splitlines()[-5:]
                            for line in tail:
                                print("#   %s/%s: %s" % (node.name, log, line))
        # In the sanitizer pass a report may come from a process no test
        # looked at after it (an agent stopping, a worker exiting).
        for node in c.nodes:
            for log in logs:
                path = os.path.join(node.home, log)
                if not os.path.exists(path):
                    continue
                found = [line for line in open(path, errors="replace").read().splitlines()
                         if "Sanitizer" in line or ": runtime error:" in line]
                if found:
                    failed += 1
                    print("not ok - sanitizer reports in %s/%s" % (node.name, log), flush=True)
                    for line in found[:10]:
                        print("#   " + line)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
