#!/usr/bin/env python3
"""fake_agent.py - stands in for the agent's local socket in the preload
tests, which run host programs with no cluster.

  fake_agent.py SPOOL DIR serve   answers by the name asked for:
                                  have-*  the file is made in DIR: installed
                                  dir-*   the directory is made: installed
                                  none-*  absent
                                  down-*  unavailable
  fake_agent.py SPOOL DIR hang    accepts and never answers

Each connection is logged to SPOOL/conns.log as "<pid>".  SPOOL/fake.ready
appears when it listens.
"""
import os
import socket
import struct
import sys
import threading

spool, top, mode = sys.argv[1:4]
path = os.path.join(spool, "agent.sock")
lock = threading.Lock()


def log(name, line):
    with lock, open(os.path.join(spool, name), "a") as f:
        f.write(line + "\n")


def answer(rel):
    name = os.path.basename(rel)
    target = os.path.join(top, rel)
    if name.startswith("have-"):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target + ".tmp", "w") as f:
            f.write("fetched %s\n" % rel)
        os.rename(target + ".tmp", target)
        return b"I\n"
    if name.startswith("dir-"):
        os.makedirs(target, exist_ok=True)
        return b"I\n"
    if name.startswith("none-"):
        return b"A\n"
    return b"U\n"


def serve(c):
    pid = struct.unpack("3i", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    log("conns.log", str(pid))
    buf = b""
    while True:
        data = c.recv(65536)
        if not data:
            break
        if mode == "hang":
            continue
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            op, ns, rel = line.decode().split("\t")
            c.sendall(answer(rel))
    c.close()


if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
s.listen(128)
open(os.path.join(spool, "fake.ready"), "w").close()
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
