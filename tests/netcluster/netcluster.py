#!/usr/bin/env python3
"""netcluster.py - a ClusterStorage cluster of N nodes, each in a network
namespace of its own, on this machine: for trying the cluster by hand and
for tests that need nodes to die, leave, join and be cut off
(tests/netcluster/test_membership.py).

One bridge in the root namespace holds the subnet's .254 address, where
memcached and MariaDB listen; node i lives in namespace <tag>-i with a veth
pair and address <subnet>.i (tests/faults/net.py makes all that, and the
faults: isolate, cut, slow with tc netem or, on a kernel without it, tbf).
Each node runs, inside its namespace, its agent (`cs-replicate serve`, as
the web user, on <addr>:8081) and an nginx under LD_PRELOAD=libcs.so
serving its namespace directory on <addr>:80 (and with `try_files` on
<addr>:8080). Nothing leaves the machine: nothing is routed beyond the
bridge.

Zones may be made distant (latency=, --rtt): what each node sends is held
on its way out, by destination, so that a round trip takes, say, 1 ms
within a zone, 20 ms between zones, and 1 or 20 ms to the registry
depending on the node's zone (tests/faults/net.py's delay_zones: an
NFQUEUE per delay and tests/faults/netdelay.py, as this kernel has no
netem).

By hand (as root; it re-runs itself with sudo):

    python3 tests/netcluster/netcluster.py up --nodes 5 [--replicas 2]
        [--zones a,a,b,b,c] [--rtt 1,20 [--registry-rtt a=1,b=20]]
        [--down-after 3] [--log info]

prints each node's address, URLs and commands to act as that node, and
stays up until Ctrl-C, then removes everything it made.

As a library (see tests/netcluster/README.md):

    with NetCluster(nodes=5, replicas=2) as c:
        n3 = c.node(3)
        n3.write([("a/b.txt", "a/b.txt@1", 5000)])   # through the library
        c.status_json().data["files"]["live"]
        n3.kill(); n3.isolate(); n3.rejoin(); n3.start()
        n6 = c.add_node()
        n6.get("/a/b.txt")                             # via its nginx
        n3.cs("verify", "--rate", "max").returncode
        c.query("SELECT COUNT(*) FROM files")

Files written with write() have the bytes of tests/faults/content.py: a
version is named (vid) and sized, and its bytes can be made again to
compare with what a node serves.
"""
import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "integration"))
sys.path.insert(0, os.path.join(TESTS, "faults"))
import cluster as cl  # noqa: E402
import content  # noqa: E402
import net as netmod  # noqa: E402

AGENT_PORT = 8081               # every node has its own port space
NGINX_PORT = 80
TRY_PORT = 8080
WORKER = os.path.join(TESTS, "faults", "worker.py")
# Host programs run as the web user: the system's Python, which it may run.
HOST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class StatusUnavailable(Exception):
    """This build's `cs-replicate status` has no --json."""


class Status:
    """`cs-replicate status --json` as run: rc, the parsed object (data),
    stderr; data is None when the output was no JSON."""

    def __init__(self, p):
        self.rc, self.stdout, self.stderr = p.returncode, p.stdout, p.stderr
        try:
            self.data = json.loads(p.stdout)
        except ValueError:
            self.data = None

    def node(self, name):
        """The entry of node name in "nodes", or None."""
        for n in (self.data or {}).get("nodes", []):
            if n.get("name") == name:
                return n
        return None

    def files(self, key):
        return (self.data or {}).get("files", {}).get(key)

    def brief(self):
        """One line for a report: health, reasons, counts, each node."""
        d = self.data or {}
        nodes = " ".join("%s:%s%s,pinned=%s" % (n.get("name"), n.get("state"),
                                                "" if n.get("up") else ",DOWN", n.get("pinned"))
                         for n in d.get("nodes", []))
        return "exit %d healthy=%s files=%s reasons=%s nodes: %s" % (
            self.rc, d.get("healthy"), d.get("files"), d.get("reasons"), nodes)


class NetNode(cl.Node):
    """A node whose agent and nginx run in its own network namespace, on
    its own address."""

    def __init__(self, cluster, index, zone=None):
        super().__init__(cluster, index)
        net = cluster.net
        self.addr = net.addr(index)
        self.netns = net.ns(index)
        self.serve_port = AGENT_PORT
        self.port, self.try_port = NGINX_PORT, TRY_PORT
        self.url = "http://%s:%d" % (self.addr, self.serve_port)
        self.nsfd = net.netns_fd(index)
        self.zone = zone
        self.killed = False

    # -- where its processes run -------------------------------------------
    def inside(self, then=None, session=False):
        """A preexec_fn: enter this node's namespace, then (session) lead
        a process group of its own, so a kill reaches every process the
        program starts (nginx's workers), then run then()."""
        fd = self.nsfd

        def preexec():
            if not netmod.enter(fd):
                os._exit(126)
            if session:
                os.setsid()
            if then:
                then()
        return preexec

    def env(self, preload=False, **extra):
        """As Node.env; with the cluster's node_users, the agent and its
        commands log in to MariaDB as a user of this node's own, so the
        server counts each node's statements apart (USER_STATISTICS)."""
        e = super().env(preload=preload, **extra)
        if not preload and self.cluster.node_users and "CS_MYSQL" not in extra:
            e["CS_MYSQL"] = self.cluster.mysql_url_for(self.name)
        return e

    def rtt(self, host, port, count=20):
        """Round trips from this node's namespace to host:port, in ms: the
        time each TCP connect() takes (SYN out, SYN-ACK back), sorted."""
        code = ("import socket,sys,time\n"
                "for _ in range(int(sys.argv[3])):\n"
                "    s=socket.socket(); t=time.perf_counter()\n"
                "    s.connect((sys.argv[1],int(sys.argv[2])))\n"
                "    print((time.perf_counter()-t)*1e3); s.close(); time.sleep(0.02)\n")
        p = subprocess.run([sys.executable, "-c", code, host, str(port), str(count)],
                           capture_output=True, text=True, preexec_fn=self.inside(), timeout=60)
        if p.returncode != 0:
            raise RuntimeError("%s: connect to %s:%s: %s" % (self.name, host, port, p.stderr))
        return sorted(float(x) for x in p.stdout.split())

    def start_serve(self, *args, **extra):
        """The agent, with the cluster's agent_env (variables only agents
        get, not the commands run as this node) and extra."""
        env = dict(self.cluster.agent_env)
        env.update(extra)
        return super().start_serve(*args, **env)

    def start_nginx(self, preload=True, workers=None, dav=False):
        """As Node.start_nginx, with the cluster's nginx_workers unless
        told (one each keeps ten nodes' nginx light on a small machine)."""
        super().start_nginx(preload, workers or self.cluster.nginx_workers, dav)

    def serve_preexec(self, umask=None, nofile=None):
        return self.inside(cl.as_web_user(umask, nofile), session=True)

    def nginx_preexec(self):
        return self.inside(session=True)

    # -- lifetime ----------------------------------------------------------
    def start(self):
        """Its agent, then its nginx; waits until both answer."""
        self.killed = False
        if not (self.serve and self.serve.poll() is None):
            self.start_serve()
        if self.cluster.want_nginx and not (self.nginx and self.nginx.poll() is None):
            self.start_nginx()

    def stop(self):
        """nginx and the agent, each asked to stop (SIGQUIT, SIGTERM)."""
        self.stop_nginx()
        return self.stop_serve()

    def kill(self):
        """SIGKILL to the agent and to nginx with its workers: the node
        dies as a machine would, with no goodbye to anyone."""
        for p in (self.nginx, self.serve):
            if p and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.nginx = self.serve = None
        self.killed = True

    def agent_alive(self):
        return self.serve is not None and self.serve.poll() is None

    # -- its links (tests/faults/net.py) -----------------------------------
    def isolate(self):
        """Its bridge port down: it reaches no peer and no registry, and
        nothing reaches it; packets vanish."""
        self.cluster.net.isolate(self.index)

    def rejoin(self):
        self.cluster.net.rejoin(self.index)

    def slow(self, delay_ms, rate_kbit):
        """Its traffic both ways delayed and limited (netem), or limited
        (tbf) where the kernel has no netem: cluster.net.shaper says."""
        self.cluster.net.slow(self.index, delay_ms, rate_kbit)

    def fast(self):
        self.cluster.net.fast(self.index)

    # -- acting as this node ---------------------------------------------
    def cs(self, *args, check=False, timeout=180, **extra):
        """build/cs-replicate <args> as this node: in its namespace, as the
        web user, with its agent's environment (plus extra). The
        CompletedProcess (returncode, stdout, stderr as text)."""
        p = subprocess.run([os.path.join(cl.BUILD, "cs-replicate")] + list(args),
                           env=self.env(**extra), capture_output=True, text=True,
                           preexec_fn=self.inside(cl.as_web_user()), timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("%s: cs-replicate %s: exit %d\n%s%s" % (
                self.name, " ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def cs_popen(self, *args, **extra):
        """cs-replicate <args> as this node, started and not waited for
        (stdout and stderr piped, as text)."""
        return subprocess.Popen([os.path.join(cl.BUILD, "cs-replicate")] + list(args),
                                env=self.env(**extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=self.inside(cl.as_web_user()))

    def run(self, argv, preload=True, timeout=120, **kw):
        """A program as a host process of this node: in its namespace, as
        the web user, under the library (preload) with a host's
        environment, or with the agent's."""
        return subprocess.run(argv, env=self.env(preload=preload), capture_output=True,
                              preexec_fn=self.inside(cl.as_web_user()), timeout=timeout, **kw)

    def popen(self, argv, preload=True):
        return subprocess.Popen(argv, env=self.env(preload=preload), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE,
                                preexec_fn=self.inside(cl.as_web_user()))

    def write(self, versions, timeout=300):
        """Write each (rel, vid, size) through the library, as a host
        program of this node would (open O_TRUNC, write, close): the bytes
        of content.make(vid, size). The rels whose close() returned 0."""
        ops = [{"op": "write", "vid": vid, "size": size, "path": os.path.join(self.dir, rel),
                "tmp": None, "chunk": 1 << 20, "pause_ms": 0} for rel, vid, size in versions]
        fd, opsfile = tempfile.mkstemp(prefix="%s.ops." % self.name, dir=self.cluster.work())
        with os.fdopen(fd, "w") as f:
            json.dump(ops, f)
        os.chmod(opsfile, 0o644)
        results = opsfile + ".out"
        try:
            p = self.run([HOST_PYTHON, WORKER, opsfile, results], timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError("%s: writer exited %d: %s" % (self.name, p.returncode,
                                                                   p.stderr.decode()[-2000:]))
            with open(results) as f:
                events = [json.loads(line) for line in f]
        finally:
            for x in (opsfile, results):
                try:
                    os.unlink(x)
                except FileNotFoundError:
                    pass
        acked = {e["vid"] for e in events if e["ev"] == "ack"}
        return [rel for rel, vid, size in versions if vid in acked]

    def get(self, path, try_files=False, timeout=30):
        """GET path through this node's nginx, from the root namespace to
        its address: (status, body)."""
        return super().get(path, try_files, timeout)

    def disk(self, rel):
        """rel's bytes in this node's directory, read directly (not through
        the library), or None."""
        try:
            with open(os.path.join(self.dir, rel), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    # -- for a person at a terminal ------------------------------------------
    def env_assignments(self, preload=False):
        return " ".join("%s=%s" % (k, shlex.quote(v))
                        for k, v in sorted(self.env(preload=preload).items()))

    def command_line(self, args="status"):
        """A shell line that runs cs-replicate <args> as this node."""
        return "ip netns exec %s runuser -u %s -- env %s %s %s" % (
            self.netns, cl.WEB_USER, self.env_assignments(),
            shlex.quote(os.path.join(cl.BUILD, "cs-replicate")), args)

    def write_scripts(self):
        """<home>/cs (cs-replicate as this node) and <home>/sh (a shell as
        a host process of this node: in its namespace, as the web user,
        under the library, in its directory). Their paths."""
        made = []
        for name, body in (
                ("cs", "exec ip netns exec %s runuser -u %s -- env %s %s \"$@\"\n" % (
                    self.netns, cl.WEB_USER, self.env_assignments(),
                    shlex.quote(os.path.join(cl.BUILD, "cs-replicate")))),
                ("sh", "cd %s && exec ip netns exec %s runuser -u %s -- env %s "
                       "/bin/sh \"$@\"\n" % (shlex.quote(self.dir), self.netns, cl.WEB_USER,
                                             self.env_assignments(preload=True)))):
            path = os.path.join(self.home, name)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n# %s as %s (netcluster.py)\n%s" % (name, self.name, body))
            os.chmod(path, 0o700)
            made.append(path)
        return made


class NetCluster(cl.Cluster):
    """memcached and MariaDB on the bridge, and nodes in namespaces.
    zones: one CS_ZONE per node (a list, or None); extra_env: more of the
    agents' and commands' variables (CS_REPAIR_RATE...); agent_env: the
    agents' only (CS_VERIFY_RATE=off, say, for the agents but not for a
    `verify` run by hand).  latency: (within_ms, between_ms, {zone:
    registry_ms}) round trips, from before the registry starts (see
    net.delay_zones); node_users: each node logs in to MariaDB as a
    user of its own, cs_<name>; nginx_workers: each nginx's workers."""
    node_class = NetNode

    def __init__(self, nodes=5, replicas=2, zones=None, down_after=3, extra_env=None,
                 agent_env=None, log_level="warn", nginx=True, latency=None, node_users=False,
                 nginx_workers=2):
        if zones is not None and len(zones) != nodes:
            raise ValueError("%d zones for %d nodes" % (len(zones), nodes))
        self.net = netmod.Net(nodes)
        self.zones = list(zones) if zones else None
        for i, z in enumerate(self.zones or [], 1):
            self.net.zone[i] = z
        self.latency = latency
        self.node_users = node_users
        self.nginx_workers = nginx_workers
        self.replicas = replicas
        self.agent_env = dict(agent_env or {})
        self.down_after = down_after
        env = {"CS_REPLICAS": str(replicas), "CS_DOWN_AFTER": str(down_after)}
        env.update(extra_env or {})
        super().__init__(nodes=nodes, namespace="img", log_level=log_level, nginx=nginx,
                         host=self.net.host, extra_env=env,
                         node_env=lambda n: {"CS_ZONE": n.zone} if n.zone else {})
        self._status_json = None        # whether this build's status has --json

    def make_node(self, index, zone=None):
        if zone is None and self.zones and index <= len(self.zones):
            zone = self.zones[index - 1]
        return NetNode(self, index, zone)

    # -- lifetime ----------------------------------------------------------
    def start(self):
        netmod.sweep_dead()
        self.net.setup()
        return super().start()

    def start_memcached(self):
        """The registry's ports are chosen by now: the zones' latency goes
        on before any server or agent starts."""
        if self.latency:
            within, between, registry = self.latency
            self.net.delay_zones(within, between, registry,
                                 (self.memcached_port, self.mysql_port))
        super().start_memcached()

    def setup_database(self):
        super().setup_database()
        if self.node_users:
            for i in range(1, self.n + 1):
                self.add_mysql_user("node%d" % i)

    def add_mysql_user(self, name):
        """MariaDB user cs_<name>, with the password and grants of cs."""
        self.sql("CREATE USER IF NOT EXISTS 'cs_{0}'@'%' IDENTIFIED BY '{1}';"
                 "GRANT SELECT, INSERT, UPDATE, DELETE ON cs.* TO 'cs_{0}'@'%';"
                 .format(name, self.mysql_password))

    def mysql_url_for(self, name):
        """CS_MYSQL for node name: as cs_<name> when node_users."""
        if not self.node_users:
            return self.mysql_url
        return self.mysql_url.replace("mysql://cs:", "mysql://cs_%s:" % name, 1)

    def stop(self):
        try:
            self.net.heal()
        except netmod.NetError as e:
            print("# %s" % e, file=sys.stderr)
        super().stop()
        for n in self.nodes:
            os.close(n.nsfd)
        for e in self.net.teardown():
            print("# %s" % e, file=sys.stderr)

    def work(self):
        """A directory the web user may write in, for host programs' files."""
        d = os.path.join(self.tmp, "work")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o1777)
        return d

    def node(self, i):
        """Node i, 1-based, as in its name and address."""
        return self.nodes[i - 1]

    def add_node(self, zone=None, start=True):
        """A new, empty node (namespace, address, agent, nginx) joining the
        running cluster; returned started unless start is False."""
        i = self.net.add_node()
        node = self.make_node(i, zone)
        self.net.add_zoned(i, node.zone)
        if self.node_users:
            self.add_mysql_user(node.name)
        self.nodes.append(node)
        self.n = len(self.nodes)
        if start:
            node.start()
        return node

    # -- the registry --------------------------------------------------------
    def query(self, statement):
        """Rows of a SELECT on the registry, each a list of strings (None
        for NULL)."""
        out = self.sql(statement, db="cs").stdout
        return [[None if v == "NULL" else v for v in line.split("\t")]
                for line in out.splitlines()]

    def value(self, statement):
        rows = self.query(statement)
        return rows[0][0] if rows else None

    def node_id(self, name):
        return int(self.value("SELECT id FROM nodes WHERE name='%s'" % name))

    def up_sql(self, alias="n"):
        """SQL: node alias is up (a heartbeat within CS_DOWN_AFTER)."""
        return "%s.heartbeat_at > NOW(3) - INTERVAL %d SECOND" % (alias, self.down_after)

    def under_replicated(self):
        """From the registry itself, as status --json defines it: live
        files with fewer than CS_REPLICAS copies that count (current,
        pinned, on up active nodes): (count, a few of their paths)."""
        rows = self.query(
            "SELECT f.path FROM files f WHERE f.deleted=0 AND (SELECT COUNT(*) FROM replicas r"
            " JOIN nodes n ON n.id=r.node_id WHERE r.file_id=f.id AND r.version=f.version"
            " AND r.stale=0 AND r.pinned=1 AND n.state='active' AND %s) < %d"
            % (self.up_sql(), self.replicas))
        return len(rows), [r[0] for r in rows[:5]]

    def live_files(self):
        return int(self.value("SELECT COUNT(*) FROM files WHERE deleted=0"))

    def node_up_sql(self, name):
        """Whether the registry has node name up now (its heartbeat)."""
        return self.value("SELECT COALESCE(%s, 0) FROM nodes n WHERE n.name='%s'"
                          % (self.up_sql(), name)) == "1"

    # -- status --json ------------------------------------------------------
    def has_status_json(self):
        """Whether this build's status takes --json (asked once)."""
        if self._status_json is None:
            p = self.nodes[0].cs("status", "--json")
            self._status_json = not (p.returncode == 2 and "usage" in p.stderr)
        return self._status_json

    def status_json(self, node=1):
        """`cs-replicate status --json` run as node (1-based): a Status;
        StatusUnavailable when this build has no --json."""
        if not self.has_status_json():
            raise StatusUnavailable("status --json not available")
        return Status(self.node(node).cs("status", "--json", timeout=60))

    def has_command(self, name):
        """Whether `cs-replicate help` lists command name."""
        out = self.nodes[0].cs("help").stdout
        return any(line.split()[:1] == [name] for line in out.splitlines())


def expected(vid, size):
    """The bytes write() writes for (vid, size)."""
    return content.make(vid, size)


# ---- up: a cluster to try by hand ------------------------------------------

def describe(c):
    net = c.net
    print("network: bridge %s %s/24, nodes in namespaces %s-1..%d; slow links by %s%s"
          % (net.bridge, net.host, net.tag, len(c.nodes), net.shaper,
             "" if net.shaper == "netem" else " (this kernel has no sch_netem)"))
    print("registry: MariaDB %s (root: mariadb --no-defaults -uroot --socket=%s cs),"
          " memcached %s:%d" % (c.mysql_url, c.mysql_socket, c.host, c.memcached_port))
    if c.latency:
        within, between, registry = c.latency
        print("latency (round trips, held by netdelay.py): %g ms within a zone, %g ms between"
              " zones; to the registry: %s" % (within, between, ", ".join(
                  "zone %s %g ms" % kv for kv in sorted(registry.items())) or "none"))
    print("CS_REPLICAS=%d CS_DOWN_AFTER=%d; files under %s" % (c.replicas, c.down_after, c.tmp))
    for n in c.nodes:
        cs_script, sh_script = n.write_scripts()
        print("\n%s%s: namespace %s, address %s" % (n.name, " (zone %s)" % n.zone if n.zone
                                                     else "", n.netns, n.addr))
        print("  nginx  http://%s/  (with try_files: http://%s:%d/)" % (n.addr, n.addr,
                                                                         n.try_port))
        print("  agent  %s  log %s" % (n.url, os.path.join(n.home, "serve.log")))
        print("  dir    %s  spool %s" % (n.dir, n.spool))
        print("  as %s:   %s status --json    (any cs-replicate command)" % (n.name, cs_script))
        print("  a shell under the library, as the web user: %s" % sh_script)
        print("  that is: %s" % n.command_line("status --json"))


def latency_arg(args, zones):
    """NetCluster's latency from --rtt WITHIN,BETWEEN and --registry-rtt
    ZONE=MS,...; None without --rtt."""
    if not args.rtt:
        return None
    try:
        within, between = (float(x) for x in args.rtt.split(","))
        registry = {z: float(ms) for z, ms in (kv.split("=") for kv in
                                                 args.registry_rtt.split(",") if kv)}
    except ValueError:
        sys.exit("netcluster.py: --rtt WITHIN,BETWEEN and --registry-rtt ZONE=MS,... in ms")
    if not zones:
        sys.exit("netcluster.py: --rtt needs --zones")
    return within, between, registry


def cmd_up(args):
    zones = args.zones.split(",") if args.zones else None
    if zones and len(zones) != args.nodes:
        sys.exit("netcluster.py: --zones names %d zones for %d nodes" % (len(zones), args.nodes))

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)       # even when started with it ignored (&)
    c = NetCluster(nodes=args.nodes, replicas=args.replicas, zones=zones,
                   down_after=args.down_after, log_level=args.log,
                   latency=latency_arg(args, zones), node_users=args.node_users)
    try:
        with c:
            describe(c)
            print("\nUp. Ctrl-C stops every process and removes the namespaces, the bridge"
                  " and %s." % c.tmp, flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopped; everything removed", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(prog="tests/netcluster/netcluster.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster and keep it up until Ctrl-C")
    up.add_argument("--nodes", type=int, default=5)
    up.add_argument("--replicas", type=int, default=2)
    up.add_argument("--zones", help="one CS_ZONE per node, comma-separated: a,a,b,b,c")
    up.add_argument("--rtt", help="WITHIN,BETWEEN: round trips in ms within a zone and"
                    " between zones (netem)")
    up.add_argument("--registry-rtt", default="", help="ZONE=MS,...: each zone's round trip"
                    " to the registry (with --rtt)")
    up.add_argument("--node-users", action="store_true",
                    help="each node logs in to MariaDB as cs_<node>")
    up.add_argument("--down-after", type=int, default=3, help="CS_DOWN_AFTER, seconds")
    up.add_argument("--log", default="info", help="CS_LOG of agents and hosts")
    args = ap.parse_args()
    if args.nodes < 1 or args.nodes > 250 or not 1 <= args.replicas <= args.nodes:
        ap.error("need 1 to 250 nodes and 1 <= replicas <= nodes")
    cl.as_root()
    if not os.path.exists(os.path.join(cl.BUILD, "libcs.so")):
        sys.exit("netcluster.py: %s/libcs.so is missing: run make first" % cl.BUILD)
    return cmd_up(args)


if __name__ == "__main__":
    sys.exit(main())
