"""probe.py - the compatibility matrix's eyes on a node: a small program
run as the web user under the library on one node, which reads and writes
files there for the runner (tests/compat/matrix.py), so a check on another
node is a plain program's open() under the library, as any user's would
be, and costs no process start.

One request per line on stdin, one answer per line on stdout, both JSON:
  {"op": "read", "path": P}          -> {"data": base64} | {"errno": N, "error": "EIO (...)"}
  {"op": "write", "path": P, "data": base64}
                                     -> {} | {"errno": N, "error": text}
A write makes the missing directories above P (locally: the cluster has a
directory wherever it has a file below it) and writes P in place.
"""
import base64
import errno
import json
import os
import sys


def answer(req):
    path = req["path"]
    try:
        if req["op"] == "read":
            with open(path, "rb") as f:
                return {"data": base64.b64encode(f.read()).decode()}
        if req["op"] == "write":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(base64.b64decode(req["data"]))
            return {}
        return {"errno": 22, "error": "unknown op %r" % req["op"]}
    except OSError as e:
        return {"errno": e.errno, "error": "%s (%s)" % (errno.errorcode.get(e.errno, "?"),
                                                      e.strerror)}


def main():
    for line in sys.stdin:
        print(json.dumps(answer(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
