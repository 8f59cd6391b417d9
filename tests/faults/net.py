"""net.py - the fault suite's network: one namespace per node on a bridge,
all on this machine, and the faults it can put on the links.  The
membership tests' harness (tests/netcluster/netcluster.py) uses it too,
adding nodes to a running network (add_node).

Topology: a bridge in the root namespace holds the subnet's .254 address
(memcached and MariaDB listen there); node i lives in network namespace
<tag>-<i> with a veth pair whose inside end, eth0, has address .i and whose
outside end is a port of the bridge.  Nothing is routed beyond the bridge.

Faults, each with its undoing:
  isolate(i)     the node's bridge port down: it reaches neither its peers
                 nor the registry, and packets vanish (no reset)
  cut(i, j)      i and j lose each other only: each gets a permanent
                 neighbour entry for the other with an address nobody has,
                 so their packets go out and are dropped, silently
  slow(i, ...)   the node's traffic both ways through netem (delay and a
                 rate) where the kernel has it, else through tbf (a rate
                 and a queue, which delays by queueing)

Distance, not a fault: delay_zones() puts nodes in zones some way apart,
a round trip taking so long within a zone, so long between zones and to
the registry (each node's packets held on their way in by netdelay.py).

Every name carries the harness's pid (csf<pid>-...), so what a run that
died left behind can be found and removed by the next one (sweep_dead).
"""
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys

CLONE_NEWNET = 0x40000000
NOWHERE = "02:00:00:00:00:01"   # a locally administered address no port has
IPTABLES = "iptables-legacy"    # NFQUEUE as an xtables target: no nft queue needed
DELAYER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netdelay.py")
_libc = ctypes.CDLL(None, use_errno=True)


class NetError(RuntimeError):
    pass


def ip(*args, check=True):
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise NetError("ip %s: %s" % (" ".join(args), p.stderr.strip()))
    return p


def tc(*args, check=True):
    p = subprocess.run(["tc"] + list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise NetError("tc %s: %s" % (" ".join(args), p.stderr.strip()))
    return p


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_dead():
    """Remove the namespaces, bridges and veths of fault runs whose harness
    is gone; the names removed."""
    gone = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"csf(\d+)-\d+$", name)
        if m and not alive(int(m.group(1))):
            ip("netns", "del", name, check=False)
            gone.append(name)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(r"\d+: (csf[bv](\d+)[^:@]*)", line)
        if m and not alive(int(m.group(2))):
            ip("link", "del", m.group(1), check=False)
            gone.append(m.group(1))
    return gone


def free_subnet():
    """A /24 of 10.77.0.0/16 that no route of this machine uses yet."""
    used = ip("-4", "route", "show", "table", "all", check=False).stdout
    for k in range(256):
        net = "10.77.%d." % k
        if net not in used:
            return net
    raise NetError("no free 10.77.x.0/24 subnet")


class Net:
    def __init__(self, nodes):
        self.tag = "csf%d" % os.getpid()
        self.n = nodes
        self.bridge = "csfb%d" % os.getpid()
        self.subnet = free_subnet()
        self.host = self.subnet + "254"
        self.up = False
        self.made = []                  # what to remove: ("netns"|"link", name)
        self.isolated = set()
        self.cuts = set()               # frozenset({i, j})
        self.slowed = {}                # i -> description
        self.shaper = None              # "netem" or "tbf", once probed
        self.zone = {}                  # i -> its zone, for delay_zones
        self.latency = None             # what delay_zones was asked for
        self.delayer = None             # netdelay.py, while zones are distant

    def ns(self, i):
        return "%s-%d" % (self.tag, i)

    def port(self, i):
        """The root namespace's end of node i's veth pair."""
        return "csfv%d-%d" % (os.getpid(), i)

    def addr(self, i):
        return self.subnet + str(i)

    def setup(self):
        ip("link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        ip("addr", "add", self.host + "/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in range(1, self.n + 1):
            self.plug(i)
        self.up = True
        self.shaper = self.probe_shaper()

    def plug(self, i):
        """Node i's namespace and veth pair, its address, on the bridge."""
        ns = self.ns(i)
        ip("netns", "add", ns)
        self.made.append(("netns", ns))
        ip("link", "add", self.port(i), "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.made.append(("link", self.port(i)))
        ip("link", "set", self.port(i), "master", self.bridge)
        ip("link", "set", self.port(i), "up")
        ip("-n", ns, "addr", "add", self.addr(i) + "/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")

    def add_node(self):
        """One more node, once set up (a node that joins later): its index."""
        self.n += 1
        self.plug(self.n)
        return self.n

    def probe_shaper(self):
        dev = self.port(1)
        if tc("qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms", check=False).returncode == 0:
            tc("qdisc", "del", "dev", dev, "root", check=False)
            return "netem"
        tc("qdisc", "add", "dev", dev, "root", "tbf", "rate", "1mbit", "burst", "16kb",
           "latency", "1s")
        tc("qdisc", "del", "dev", dev, "root", check=False)
        return "tbf"

    def netns_fd(self, i):
        """An O_CLOEXEC descriptor of node i's namespace, for setns."""
        return os.open("/run/netns/" + self.ns(i), os.O_RDONLY | os.O_CLOEXEC)

    def teardown(self):
        self.stop_delays()
        errors = []
        for kind, name in reversed(self.made):
            if kind == "link":
                p = ip("link", "del", name, check=False)
                # A veth goes with its namespace or its peer: already gone.
                if p.returncode != 0 and "Cannot find device" not in p.stderr:
                    errors.append("ip link del %s: %s" % (name, p.stderr.strip()))
            else:
                p = ip("netns", "del", name, check=False)
                if p.returncode != 0:
                    errors.append("ip netns del %s: %s" % (name, p.stderr.strip()))
        self.made = []
        self.up = False
        return errors

    # -- faults ----------------------------------------------------------
    def isolate(self, i):
        ip("link", "set", self.port(i), "down")
        self.isolated.add(i)

    def rejoin(self, i):
        ip("link", "set", self.port(i), "up")
        self.isolated.discard(i)

    def cut(self, i, j):
        ip("-n", self.ns(i), "neigh", "replace", self.addr(j), "lladdr", NOWHERE,
           "dev", "eth0", "nud", "permanent")
        ip("-n", self.ns(j), "neigh", "replace", self.addr(i), "lladdr", NOWHERE,
           "dev", "eth0", "nud", "permanent")
        self.cuts.add(frozenset((i, j)))

    def join(self, i, j):
        ip("-n", self.ns(i), "neigh", "del", self.addr(j), "dev", "eth0", check=False)
        ip("-n", self.ns(j), "neigh", "del", self.addr(i), "dev", "eth0", check=False)
        self.cuts.discard(frozenset((i, j)))

    def slow(self, i, delay_ms, rate_kbit):
        """Node i's traffic both ways: netem delay and rate, or tbf at the
        rate (whose queue delays instead)."""
        if self.shaper == "netem":
            q = ["netem", "delay", "%dms" % delay_ms, "rate", "%dkbit" % rate_kbit]
        else:
            q = ["tbf", "rate", "%dkbit" % rate_kbit, "burst", "16kb", "latency", "2s"]
        for pre, dev in (([], self.port(i)), (["-n", self.ns(i)], "eth0")):
            tc(*(pre + ["qdisc", "replace", "dev", dev, "root"] + q))
        self.slowed[i] = ("%dms %dkbit" % (delay_ms, rate_kbit) if self.shaper == "netem"
                          else "%dkbit" % rate_kbit)

    def fast(self, i):
        tc("qdisc", "del", "dev", self.port(i), "root", check=False)
        tc("-n", self.ns(i), "qdisc", "del", "dev", "eth0", "root", check=False)
        self.slowed.pop(i, None)

    def heal(self):
        for i in list(self.isolated):
            self.rejoin(i)
        for pair in list(self.cuts):
            self.join(*sorted(pair))
        for i in list(self.slowed):
            self.fast(i)


    # -- zones: latency between nodes -----------------------------------------
    def delay_zones(self, within_ms, between_ms, registry_ms=None, registry_ports=()):
        """Make the zones (self.zone: node -> name) distant: a round trip
        takes within_ms between nodes of one zone, between_ms between
        zones, and registry_ms[zone] from a node of that zone to the
        registry (.254, on registry_ports only: a test's own client there
        is not delayed).

        All of it is added on each node's way in, by source: from a peer
        half the round trip, as the peer holds the other half of what it
        is sent; from the registry all of it, since what nodes send the
        registry arrives in the root namespace, which delays nothing.  Not
        with tc netem, which kernels built without sch_netem (this
        machine's) lack, but in the node's INPUT chain: iptables sends
        those packets to an NFQUEUE, one queue number per delay, and
        netdelay.py holds each for its queue's delay.  On the way in, not
        out: a packet held on its way out still belongs to its sender's
        socket, and TCP's small queues would then send one packet per hold
        (121 KB took 290 ms at 20 ms); the veth hands the receiver packets
        no socket owns.  The links, their faults (isolate, cut, slow) and
        tc stay as they were."""
        if not shutil.which(IPTABLES):
            raise NetError("zones need %s (Debian's iptables package)" % IPTABLES)
        self.latency = {"within": within_ms, "between": between_ms,
                        "registry": dict(registry_ms or {}), "ports": list(registry_ports)}
        self.delayer = subprocess.Popen([sys.executable, DELAYER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        for i in range(1, self.n + 1):
            self.shape(i)

    def shape(self, i):
        """Node i's delays: its queues attached to the delayer, and one
        rule per peer and per registry port."""
        if not self.latency:
            return
        lat = self.latency
        delays = {1: lat["within"] / 2, 2: lat["between"] / 2,
                  3: lat["registry"].get(self.zone.get(i, ""), 0)}
        self.delayer.stdin.write(json.dumps({"netns": "/run/netns/" + self.ns(i), "delays_us": {
            q: round(ms * 1000) for q, ms in delays.items()}}) + "\n")
        self.delayer.stdin.flush()
        line = self.delayer.stdout.readline()
        if not line.startswith("ready"):
            raise NetError("netdelay.py did not attach node %d's namespace" % i)
        for j in range(1, self.n + 1):
            if j != i:
                self.add_peer_delay(i, j)
        if delays[3] > 0:
            for port in lat["ports"]:
                self.iptables(i, "-s", self.host + "/32", "-p", "tcp", "--sport", str(port),
                              "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass")

    def iptables(self, i, *rule):
        p = subprocess.run(["ip", "netns", "exec", self.ns(i), IPTABLES, "-A", "INPUT"]
                           + list(rule), capture_output=True, text=True)
        if p.returncode != 0:
            raise NetError("%s in %s: %s" % (IPTABLES, self.ns(i), p.stderr.strip()))

    def add_peer_delay(self, i, j):
        """On node i's way in, the delay from node j (its zone's or
        another's)."""
        if not self.latency:
            return
        queue = 1 if self.zone.get(i, "") == self.zone.get(j, "") else 2
        self.iptables(i, "-s", self.addr(j) + "/32", "-j", "NFQUEUE", "--queue-num", str(queue),
                      "--queue-bypass")

    def add_zoned(self, i, zone):
        """Node i (just plugged, add_node) in zone, with the delays to and
        from it when the zones are distant."""
        self.zone[i] = zone or ""
        if self.latency:
            self.shape(i)
            for j in range(1, self.n + 1):
                if j != i:
                    self.add_peer_delay(j, i)

    def stop_delays(self):
        """The delayer stopped (before the namespaces go)."""
        d, self.delayer = self.delayer, None
        if d and d.poll() is None:
            d.stdin.close()
            try:
                d.wait(5)
            except subprocess.TimeoutExpired:
                d.kill()
                d.wait()


def enter(fd):
    """setns(fd, CLONE_NEWNET) in this (child) process; False on failure."""
    return _libc.setns(fd, CLONE_NEWNET) == 0
