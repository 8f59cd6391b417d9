"""worker.py - a host process of the fault suite: run under
LD_PRELOAD=libcs.so on one node, it does the operations it is given, one
after the other, and says how each ended.

    python3 worker.py OPS RESULTS

OPS is a JSON list; each operation is one of
  {"op": "write", "vid", "size", "path", "tmp", "chunk", "pause_ms"}
      write version vid to path: in place (tmp null: open with O_TRUNC,
      write, close) or through tmp (write tmp, close, rename onto path),
      in chunks with a pause between them, so that a kill lands mid-write
  {"op": "read", "path"}    read the whole file and classify its bytes
  {"op": "unlink", "path"}  remove it
Each step that matters appends one JSON line to RESULTS with a single
write(2): "begin" before a write opens its file, "ack" only once close()
(and the rename) returned 0, so a write killed in between is never taken
for an acknowledged one.
"""
import errno
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import content  # noqa: E402


def main():
    ops = json.load(open(sys.argv[1]))
    out = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def say(**kw):
        os.write(out, (json.dumps(kw) + "\n").encode())

    for op in ops:
        kind = op["op"]
        try:
            if kind == "write":
                data = content.make(op["vid"], op["size"])
                target = op["tmp"] or op["path"]
                say(ev="begin", vid=op["vid"])
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    for at in range(0, len(data), op["chunk"]):
                        part = memoryview(data)[at:at + op["chunk"]]
                        while part:
                            n = os.write(fd, part)
                            part = part[n:]
                        if op["pause_ms"]:
                            time.sleep(op["pause_ms"] / 1000.0)
                finally:
                    os.close(fd)
                if op["tmp"]:
                    os.rename(op["tmp"], op["path"])
                say(ev="ack", vid=op["vid"])
            elif kind == "read":
                with open(op["path"], "rb") as f:
                    data = f.read()
                what, vid = content.classify(data)
                say(ev="read", path=op["path"], kind=what, vid=vid, size=len(data))
            elif kind == "unlink":
                os.unlink(op["path"])
                say(ev="unlinked", path=op["path"])
        except OSError as e:
            say(ev="fail", op=kind, vid=op.get("vid"), path=op.get("path"),
                err=errno.errorcode.get(e.errno, str(e.errno)))


if __name__ == "__main__":
    main()
