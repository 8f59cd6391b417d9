#!/usr/bin/env python3
"""netdelay.py - a fixed delay on what nodes send, for kernels without
netem (sch_netem): net.py's delay_zones starts it when tc cannot delay.

Each node's namespace sends the packets to be delayed to an NFQUEUE
(iptables -j NFQUEUE, in its INPUT chain, one queue number per delay);
this program, one process for every namespace, holds each packet for its
queue's delay and then lets it go (NF_ACCEPT).  A queue has one delay, so
its packets come due in the order they came: one batch verdict lets every
packet due go at once.  Only the packets' metadata is copied here, and
TCP's large segments come whole (NFQA_CFG_F_GSO), so a bulk transfer is a
few packets per 64 KiB.  Should this program die, the rules'
--queue-bypass lets the packets through undelayed rather than lose them.

It reads JSON lines on stdin, one per namespace to attach:

    {"netns": "/run/netns/csf123-4", "delays_us": {"1": 500, "2": 10000}}

prints "ready <netns>" once that namespace's queues are bound, and runs
until stdin closes or SIGTERM.  Needs root.
"""
import collections
import ctypes
import json
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_CFG_MASK, NFQA_CFG_FLAGS = 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_GSO = 1, 4
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NF_ACCEPT = 1
CLONE_NEWNET = 0x40000000
QUEUE_MAX = 1 << 16
_libc = ctypes.CDLL(None, use_errno=True)


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def message(kind, queue, attrs, seq):
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind,
                       NLM_F_REQUEST, seq, 0) + body


class Namespace:
    """One namespace's socket and its queues: number -> delay (s), and the
    packets held, (due, id) in the order they came."""

    def __init__(self, path, delays_us):
        self.path = path
        self.delay = {int(q): us / 1e6 for q, us in delays_us.items()}
        self.held = {q: collections.deque() for q in self.delay}
        self.seq = 0
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        there = os.open(path, os.O_RDONLY)
        try:
            if _libc.setns(there, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + path)
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        finally:
            _libc.setns(home, CLONE_NEWNET)
            os.close(home)
            os.close(there)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)     # SO_RCVBUFFORCE
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self.sock.setblocking(False)
        for q in self.delay:
            self.send(NFQNL_MSG_CONFIG, q, [attr(NFQA_CFG_CMD, struct.pack("!BBH",
                                                                             NFQNL_CFG_CMD_BIND,
                                                                             0, socket.AF_INET))])
            self.send(NFQNL_MSG_CONFIG, q, [
                attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAX)),
                attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO)),
                attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO))])

    def send(self, kind, queue, attrs):
        self.seq += 1
        self.sock.send(message(kind, queue, attrs, self.seq))

    def receive(self, now):
        """Every packet the kernel queued for us, held until due."""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if length < 16:
                    break
                if kind == NLMSG_ERROR:
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        print("netdelay: %s: netlink error %d" % (self.path, err),
                              file=sys.stderr, flush=True)
                elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    queue = struct.unpack_from("!H", data, off + 18)[0]
                    pos, end = off + 20, off + length
                    while pos + 4 <= end:
                        alen, atype = struct.unpack_from("=HH", data, pos)
                        if alen < 4:
                            break
                        if atype & 0x7fff == NFQA_PACKET_HDR:
                            pid = struct.unpack_from("!I", data, pos + 4)[0]
                            if queue in self.held:
                                self.held[queue].append((now + self.delay[queue], pid))
                            break
                        pos += (alen + 3) & ~3
                off += (length + 3) & ~3

    def release(self, now):
        """Let go what is due; the time the next packet comes due, or None."""
        nxt = None
        for q, held in self.held.items():
            last = None
            while held and held[0][0] <= now:
                last = held.popleft()[1]
            if last is not None:
                self.send(NFQNL_MSG_VERDICT_BATCH, q,
                          [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last))])
            if held and (nxt is None or held[0][0] < nxt):
                nxt = held[0][0]
        return nxt


def realtime():
    """Run before the nodes it delays: a real-time priority, so that a
    packet's hold is its queue's delay and not the wait for a CPU that
    the nodes (or a `nice` this was started under) keep busy.  It sleeps
    in select() between packets; the kernel's real-time throttling bounds
    it all the same."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError) as e:
        print("netdelay: no real-time priority (%s): delays will wait for a CPU" % e,
              file=sys.stderr, flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    realtime()
    spaces = {}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    pending = b""
    reading = True
    while reading or spaces:
        now = time.monotonic()
        nxt = None
        for ns in spaces.values():
            due = ns.release(now)
            if due is not None and (nxt is None or due < nxt):
                nxt = due
        wait = None if nxt is None else max(0.0, nxt - time.monotonic())
        fds = [ns.sock for ns in spaces.values()] + ([stdin] if reading else [])
        ready, _, _ = select.select(fds, [], [], wait)
        now = time.monotonic()
        for r in ready:
            if r is stdin:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    reading = False
                    return 0
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        spec = json.loads(line)
                        spaces[spec["netns"]] = Namespace(spec["netns"], spec["delays_us"])
                        print("ready %s" % spec["netns"], flush=True)
            else:
                for ns in spaces.values():
                    if ns.sock is r:
                        ns.receive(now)
    return 0


if __name__ == "__main__":
    sys.exit(main())
