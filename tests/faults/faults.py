"""faults.py - the fault-injection suite: a real cluster, nodes in network
namespaces, host processes reading and writing on every node while faults
land at random moments; afterwards every acknowledged write is checked.

Run through tests/faults/run (see there for the options and the report).

A run is a number of rounds.  In each, a few workers (worker.py, under
LD_PRELOAD=libcs.so as the web user) write and read on random nodes, and
one fault, sometimes two, is injected at a random moment and undone at
another: kill -9 of a writer, of a node's agent, of memcached or of
MariaDB (restarted later); a node cut off, two nodes cut from each other,
a node's links slowed (net.py); a node's disk filled (a tmpfs of its own
per node, filled to within a few kB, so the next fetch or received push
meets ENOSPC).  After the last round (and every --check-every rounds)
every fault is undone, writes cut short are written again (what a client
does after an error), the cluster is given --converge seconds to settle,
and the nodes' directories are read directly:

  lost / under-replicated  the last acknowledged version of a path is on
                           no node / on fewer than CS_REPLICAS nodes with
                           its SHA-256
  torn                     a file (or a read) whose bytes are neither
                           exactly some version written to that path, nor
                           a prefix of a version whose writer was killed or
                           failed mid-write in place (that writer's own
                           doing, which the cluster may copy faithfully);
                           looked for after every round too
  temporary files          any name matching TEMP_PATTERN, anywhere
  stale copies             a node still holding anything else at a path
                           than its last acknowledged version, or holding
                           a path that was deleted

Writes are the only thing acknowledged: a write counts once close() (and
the rename, for writes through a temporary name) returned 0 in the writer
and the writer said so.  Paths are written by one node at a time (a path
moves to another node only once its last version is settled everywhere),
so "the last acknowledged version" is well defined.
"""
import argparse
import collections
import json
import os
import pwd
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import cluster as cl  # noqa: E402
import content  # noqa: E402
import net as netmod  # noqa: E402

# The store's temporary files, whatever their naming scheme: a name that
# contains ".cs-" and ends in ".tmp".  The one place the suite knows it.
TEMP_PATTERN = re.compile(r"\.cs-.*\.tmp$")
SKIP = "skip"                   # a fault that found nothing to hit
WRITER_TMP = ".wtmp-"           # the workers' own temporary names
DISK_MB = 64                    # each node's namespace directory: a tmpfs this big
FILLER = ".fill"                # beside the namespace directory on that tmpfs
# The workers run as the web user: the system's Python, which that user may
# run (a Python of root's own may sit where it cannot).
WORKER_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

FAULTS = {                      # kind: weight
    "kill_writer": 3,
    "kill_agent": 3,
    "kill_memcached": 1,
    "kill_mariadb": 1,
    "isolate_node": 2,
    "cut_link": 2,
    "slow_link": 2,
    "disk_full": 2,
}


def log(msg):
    print("# " + msg, flush=True)


# ---- the cluster -----------------------------------------------------------

class FaultNode(cl.Node):
    """A node whose agent runs in its own network namespace, on its own
    address, with its namespace directory on a small tmpfs of its own."""

    def __init__(self, cluster, index):
        super().__init__(cluster, index)
        net = cluster.net
        self.addr = net.addr(index)
        self.serve_port = 8081
        self.url = "http://%s:%d" % (self.addr, self.serve_port)
        self.nsfd = net.netns_fd(index)
        self.disk = os.path.join(self.home, "disk")
        os.makedirs(self.disk)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0755" % DISK_MB,
                        "csfaults", self.disk], check=True)
        cluster.mounts.append(self.disk)
        self.dir = os.path.join(self.disk, cluster.namespace)
        os.makedirs(self.dir)
        pw = pwd.getpwnam(cl.WEB_USER)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.filler = os.path.join(self.disk, FILLER)
        if cluster.spool_on_disk:
            # As on a host whose spool and web root share a disk: filling
            # it fills both.
            self.spool = os.path.join(self.disk, "spool")
            os.makedirs(self.spool)
            os.chown(self.spool, pw.pw_uid, pw.pw_gid)
        self.killed = False             # its agent was killed by the suite

    def serve_preexec(self, umask=None, nofile=None):
        demote, fd = cl.as_web_user(umask, nofile), self.nsfd

        def enter_and_demote():
            if not netmod.enter(fd):
                os._exit(126)
            demote()
        return enter_and_demote

    def start_serve_nowait(self):
        self.killed = False
        with open(os.path.join(self.home, "serve.log"), "ab") as out:
            self.serve = subprocess.Popen(
                [os.path.join(cl.BUILD, "cs-replicate"), "serve"], env=self.env(),
                stdout=out, stderr=out, preexec_fn=self.serve_preexec())

    def agent_alive(self):
        return self.serve is not None and self.serve.poll() is None

    def fill(self, leave):
        """Fill this node's disk to within leave bytes."""
        st = os.statvfs(self.disk)
        free = st.f_bavail * st.f_frsize
        size = max(0, free - leave)
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            pass
        finally:
            os.close(fd)

    def unfill(self):
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass


class FaultCluster(cl.Cluster):
    node_class = FaultNode

    def __init__(self, net, nodes, replicas, spool_on_disk=False):
        self.net = net
        self.mounts = []
        self.spool_on_disk = spool_on_disk
        super().__init__(nodes=nodes, namespace="img", log_level="info", nginx=False,
                         host=net.host, extra_env={"CS_REPLICAS": str(replicas)})
        # Not among /tmp/cs-cluster.*: a run lasts long, and what cleans
        # up after other suites' runs must not take this one's directory.
        os.rmdir(self.tmp)
        base = os.environ.get("CS_FAULTS_TMP", "/var/tmp")
        self.tmp = tempfile.mkdtemp(prefix="cs-faults.", dir=base)
        os.chmod(self.tmp, 0o755)

    def stop(self):
        for node in self.nodes:
            node.stop_serve()
        for name in list(self.procs):
            self.stop_proc(name)
        for m in self.mounts:
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)
        self.mounts = []
        super().stop()

    def proc_alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def kill_proc(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.kill()
            p.wait()


# ---- what was written ----------------------------------------------------

class Version:
    def __init__(self, vid, rel, size, node, tmp):
        self.vid, self.rel, self.size, self.node, self.tmp = vid, rel, size, node, tmp
        self.state = "planned"          # begun, acked, failed, killed, unstarted
        self.sha = content.sha(content.make(vid, size))


class Path:
    def __init__(self, rel, home):
        self.rel = rel
        self.home = home
        self.versions = set()           # every vid ever planned here
        self.last = None                # ("write", vid) or ("delete", None): last acknowledged
        self.cut = set()                # vids written in place and cut short
        self.retry = False              # the last write was not acknowledged: write again
        self.busy = False


class Worker:
    def __init__(self, wid, node, ops, proc, results):
        self.wid, self.node, self.ops, self.proc, self.results = wid, node, ops, proc, results
        self.killed = False

    def events(self):
        try:
            with open(self.results) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def mid_write(self):
        ev = self.events()
        return bool(ev) and ev[-1]["ev"] == "begin"


# ---- the run ---------------------------------------------------------------

class Run:
    def __init__(self, args, c):
        self.a = args
        self.c = c
        self.net = c.net
        self.rng = random.Random(args.seed)
        self.paths = {}                 # rel -> Path
        self.versions = {}              # vid -> Version
        self.tmps = {}                  # writer temporary rel -> vid
        self.leftover_tmps = set()      # writer temporaries to remove (rel)
        self.shas = {}                  # content cache: vid -> sha
        self.scan_cache = {}            # (node, rel) -> (stat key, kind, vid)
        self.nwid = 0
        self.nversion = 0
        self.npath = 0
        self.work = os.path.join(c.tmp, "work")
        os.makedirs(self.work)
        os.chmod(self.work, 0o777)
        self.faults = collections.Counter()
        self.stats = collections.Counter()
        self.torn_seen = []             # descriptions
        self.torn_keys = set()
        self.crashes = []
        self.dishonest = []             # 404s for files the cluster had
        self.enoent = []                # (worker, read op) to judge at the round's end
        self.r = 0
        self.deferred = []              # (round, undo): faults undone in a later round
        self.checkpoints = []
        self.dead_agents = set()

    # -- planning ----------------------------------------------------------
    def size(self):
        r = self.rng.random()
        if r < 0.60:
            return self.rng.randint(200, 16 << 10)
        if r < 0.90:
            return self.rng.randint(16 << 10, 256 << 10)
        return self.rng.randint(256 << 10, 2 << 20)

    def new_version(self, path, node, mode=None):
        self.nversion += 1
        vid = "v%d" % self.nversion
        mode = mode or self.rng.choice(("inplace", "rename"))
        tmp = None
        if mode == "rename":
            tmp = os.path.join(os.path.dirname(path.rel), WRITER_TMP + vid)
            self.tmps[tmp] = vid
        v = Version(vid, path.rel, max(self.size(), 64), node, tmp)
        self.versions[vid] = v
        self.shas[vid] = v.sha
        path.versions.add(vid)
        return v

    def write_op(self, v):
        n = self.c.nodes[v.node - 1]
        big = v.size > (64 << 10)
        return {"op": "write", "vid": v.vid, "size": v.size,
                "path": os.path.join(n.dir, v.rel),
                "tmp": os.path.join(n.dir, v.tmp) if v.tmp else None,
                "chunk": self.rng.choice((4096, 16384, 65536)) if big else
                self.rng.choice((1024, 4096, 16384)),
                "pause_ms": self.rng.choice((0, 1, 5, 10, 20))}

    def settled(self, path):
        """Whether path's last acknowledged state is on every node it should
        be and nothing else is anywhere: it may then move to another node."""
        if path.retry or path.last is None:
            return False
        want = self.versions[path.last[1]].sha if path.last[0] == "write" else None
        have = 0
        for n in self.c.nodes:
            got = cl_file_sha(os.path.join(n.dir, path.rel))
            if got is not None and got != want:
                return False
            have += got is not None
        return have >= self.a.replicas if want else have == 0

    def plan(self, node):
        """A worker's operations on node (1-based): paths taken are busy."""
        ops = []
        for _ in range(self.rng.randint(1, 3)):
            r = self.rng.random()
            if r < 0.55:
                path = self.pick_write_path(node)
                if not path:
                    continue
                path.busy = True
                v = self.new_version(path, node)
                ops.append(self.write_op(v))
            elif r < 0.60:
                mine = [p for p in self.paths.values()
                        if p.home == node and not p.busy and p.last and p.last[0] == "write"]
                if mine:
                    path = self.rng.choice(mine)
                    path.busy = True
                    ops.append({"op": "unlink", "rel": path.rel,
                                "path": os.path.join(self.c.nodes[node - 1].dir, path.rel)})
            else:
                known = [p for p in self.paths.values()
                         if p.home != node and p.last and p.last[0] == "write"]
                if known:
                    path = self.rng.choice(known)
                    # Settled (on >= CS_REPLICAS nodes, so registered): a
                    # 404 for it would be a dishonest answer.
                    ops.append({"op": "read", "rel": path.rel, "last": path.last,
                                "settled": self.settled(path),
                                "path": os.path.join(self.c.nodes[node - 1].dir, path.rel)})
        return ops

    def pick_write_path(self, node):
        r = self.rng.random()
        mine = [p for p in self.paths.values() if p.home == node and not p.busy]
        if r < 0.3 and len(self.paths) < self.a.max_paths or not self.paths:
            self.npath += 1
            rel = "d%d/f%d" % (self.npath % 8, self.npath)
            p = self.paths[rel] = Path(rel, node)
            return p
        if r < 0.4:
            others = [p for p in self.paths.values() if p.home != node and not p.busy]
            self.rng.shuffle(others)
            for p in others[:3]:
                if self.settled(p):
                    self.stats["paths moved to another node"] += 1
                    p.home = node
                    return p
        return self.rng.choice(mine) if mine else None

    def spawn(self, node, ops):
        self.nwid += 1
        wid = self.nwid
        opsfile = os.path.join(self.work, "w%d.ops" % wid)
        results = os.path.join(self.work, "w%d.out" % wid)
        with open(opsfile, "w") as f:
            json.dump(ops, f)
        n = self.c.nodes[node - 1]
        with open(os.path.join(self.work, "workers.log"), "ab") as out:
            proc = subprocess.Popen(
                [WORKER_PYTHON, os.path.join(HERE, "worker.py"), opsfile, results],
                env=n.env(preload=True, CS_MISS_TIMEOUT="2"), stdout=out, stderr=out,
                preexec_fn=cl.as_web_user())
        return Worker(wid, node, ops, proc, results)

    # -- results -----------------------------------------------------------
    def collect(self, w):
        """What worker w's operations did, once it is gone."""
        events = w.events()
        begun = {e["vid"] for e in events if e["ev"] == "begin"}
        acked = {e["vid"] for e in events if e["ev"] == "ack"}
        failed = {e["vid"] for e in events if e["ev"] == "fail" and e["op"] == "write"}
        unlinked = {e["path"] for e in events if e["ev"] == "unlinked"}
        for e in events:
            if e["ev"] == "fail":
                self.stats["%s failed: %s" % (e["op"], e["err"])] += 1
            if e["ev"] == "fail" and e["op"] == "read" and e["err"] == "ENOENT":
                op = next(o for o in w.ops if o.get("path") == e["path"])
                if op["settled"]:
                    self.enoent.append((w, op))
        for op in w.ops:
            if op["op"] == "write":
                v = self.versions[op["vid"]]
                path = self.paths[v.rel]
                path.busy = False
                if v.vid in acked:
                    v.state = "acked"
                    path.last = ("write", v.vid)
                    path.retry = False
                    self.stats["writes acknowledged"] += 1
                    if v.tmp:
                        self.tmps.pop(v.tmp, None)
                elif v.vid in begun:
                    v.state = "failed" if v.vid in failed else "killed"
                    self.stats["writes failed" if v.vid in failed else
                               "writes killed mid-way"] += 1
                    path.retry = True
                    if v.tmp:
                        self.leftover_tmps.add((v.node, v.tmp))
                    else:
                        path.cut.add(v.vid)
                else:
                    v.state = "unstarted"
                    if v.tmp:
                        self.tmps.pop(v.tmp, None)
            elif op["op"] == "unlink":
                path = self.paths[op["rel"]]
                path.busy = False
                if op["path"] in unlinked:
                    path.last = ("delete", None)
                    path.retry = False
                    self.stats["deletes acknowledged"] += 1
        for e in events:
            if e["ev"] == "read":
                self.check_read(w, e)

    def check_enoent(self):
        """The ENOENTs for reads of a file that was settled when the read
        was planned, once every worker of the round is collected: one is a
        404 for a file the cluster had unless the path was deleted or
        written again meanwhile (another worker of the same round)."""
        for w, op in self.enoent:
            path = self.paths[op["rel"]]
            if tuple(path.last) == tuple(op["last"]):
                self.stats["reads of a settled file answered ENOENT"] += 1
                self.dishonest.append("round %d, node%d: %s (version %s, on >= %d nodes)"
                                      % (self.r, w.node, op["rel"], op["last"][1],
                                         self.a.replicas))
        self.enoent = []

    def check_read(self, w, e):
        rel = os.path.relpath(e["path"], self.c.nodes[w.node - 1].dir)
        path = self.paths.get(rel)
        kind, vid = e["kind"], e["vid"]
        self.stats["reads"] += 1
        if kind == content.WHOLE and path and vid in path.versions:
            self.stats["reads whole"] += 1
        elif kind == content.PREFIX and path and (vid in path.cut or (vid is None and path.cut)):
            self.stats["reads of a write cut short"] += 1
        else:
            self.stats["reads torn"] += 1
            self.torn_seen.append("read on node%d of %s: %s %s (%d bytes)"
                                  % (w.node, rel, kind, vid, e["size"]))

    # -- the nodes' directories ------------------------------------------
    def scan(self):
        """Every file on every node, classified: {(node, rel): (kind, vid)},
        temporary files [(node, rel)], files nobody wrote [(node, rel)]."""
        found, temps, unknown = {}, [], []
        for n in self.c.nodes:
            for root, dirs, files in os.walk(n.dir):
                for name in files:
                    full = os.path.join(root, name)
                    rel = os.path.relpath(full, n.dir)
                    if TEMP_PATTERN.search(name):
                        temps.append((n.index, rel))
                        continue
                    try:
                        st = os.lstat(full)
                    except FileNotFoundError:
                        continue
                    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    hit = self.scan_cache.get((n.index, rel))
                    if hit and hit[0] == key:
                        found[(n.index, rel)] = hit[1:]
                        continue
                    try:
                        with open(full, "rb") as f:
                            data = f.read()
                    except FileNotFoundError:
                        continue
                    kind, vid = content.classify(data, self.shas)
                    self.scan_cache[(n.index, rel)] = (key, kind, vid)
                    found[(n.index, rel)] = (kind, vid)
        for (node, rel), (kind, vid) in found.items():
            if rel in self.paths:
                continue
            if os.path.basename(rel).startswith(WRITER_TMP) and self.tmp_vid(rel):
                continue
            unknown.append((node, rel))
        return found, temps, unknown

    def tmp_vid(self, rel):
        vid = os.path.basename(rel)[len(WRITER_TMP):]
        v = self.versions.get(vid)
        return vid if v and v.tmp == rel else None

    def torn_in(self, found):
        """Files whose bytes no writer made: [(node, rel, kind, vid)]."""
        torn = []
        for (node, rel), (kind, vid) in found.items():
            path = self.paths.get(rel)
            if path:
                ok = (kind == content.WHOLE and vid in path.versions) or \
                     (kind == content.PREFIX and (vid in path.cut or (vid is None and path.cut)))
                # A write in place under way when the scan looked.
                ok = ok or (kind == content.PREFIX and path.busy and
                            (vid is None or self.versions.get(vid, None) is not None and
                             self.versions[vid].state in ("planned", "begun")))
            elif os.path.basename(rel).startswith(WRITER_TMP):
                tv = self.tmp_vid(rel)
                ok = tv is not None and vid in (tv, None) and kind != content.TORN
            else:
                continue
            if not ok:
                torn.append((node, rel, kind, vid))
        return torn

    def look_for_torn(self, found, when):
        for node, rel, kind, vid in self.torn_in(found):
            key = (node, rel, kind, vid)
            if key not in self.torn_keys:
                self.torn_keys.add(key)
                self.torn_seen.append("%s: node%d %s: %s (%s)" % (when, node, rel, kind, vid))

    def verdict(self, found, temps, unknown):
        """The state against what was acknowledged: a dict of lists."""
        by_path = collections.defaultdict(dict)
        for (node, rel), kv in found.items():
            by_path[rel][node] = kv
        out = {"lost": [], "under": [], "stale": [], "temps": temps, "unknown": unknown,
               "tmps left": [], "checked": 0, "deleted checked": 0}
        for rel, path in self.paths.items():
            if path.last is None:
                continue
            have = by_path.get(rel, {})
            if path.last[0] == "write":
                out["checked"] += 1
                vid = path.last[1]
                good = [n for n, (k, v) in have.items() if k == content.WHOLE and v == vid]
                other = [(n, k, v) for n, (k, v) in have.items() if n not in good]
                if not good:
                    out["lost"].append((rel, vid, sorted(have.items())))
                elif len(good) < self.a.replicas:
                    out["under"].append((rel, vid, sorted(have.items())))
                if other:
                    out["stale"].append((rel, vid, other))
            else:
                out["deleted checked"] += 1
                if have:
                    out["stale"].append((rel, "deleted", sorted(have.items())))
        for (node, rel) in found:
            if os.path.basename(rel).startswith(WRITER_TMP) and rel not in self.paths:
                out["tmps left"].append((node, rel))
        return out

    # -- faults ------------------------------------------------------------
    def installing(self):
        """Nodes with a fetch or a received push under way: a temporary
        file of the store's in their directory right now."""
        busy = set()
        for n in self.c.nodes:
            for root, dirs, files in os.walk(n.dir):
                if any(TEMP_PATTERN.search(f) for f in files):
                    busy.add(n.index)
                    break
        return busy

    def inject(self, kind, workers, last_try):
        """Inject one fault now: its undoing (a function), None when it
        needs none, False to be asked again a little later (nothing to hit
        yet; on last_try the fault takes what there is), or SKIP when there
        is nothing to hit at all."""
        a, c, net, rng = self.a, self.c, self.net, self.rng
        nodes = list(range(1, a.nodes + 1))
        if kind == "kill_writer":
            live = [w for w in workers if w.proc.poll() is None and
                    any(op["op"] == "write" for op in w.ops)]
            mid = [w for w in live if w.mid_write()]
            if not mid and not (last_try and live):
                return SKIP if last_try else False
            w = rng.choice(mid or live)
            w.proc.kill()
            w.killed = True
            self.stats["writers killed mid-write" if mid else "writers killed between writes"] += 1
            return None
        # The other faults aim, most of the time, at a node that is
        # installing a file at this very moment (a fetch or a push it
        # receives), where a fault does the most damage.
        target = None
        if kind in ("kill_agent", "isolate_node", "cut_link", "disk_full", "slow_link") and \
                rng.random() < 0.75:
            busy = sorted(self.installing())
            if not busy and not last_try:
                return False
            if busy:
                target = rng.choice(busy)
                self.stats["faults aimed at an install under way"] += 1
        pick = target or rng.choice(nodes)
        if kind == "kill_agent":
            n = c.nodes[pick - 1]
            if not n.agent_alive():
                return SKIP if last_try else False
            n.serve.kill()
            n.serve.wait()
            n.killed = True
            return lambda: n.agent_alive() or n.start_serve_nowait()
        if kind in ("kill_memcached", "kill_mariadb"):
            name = kind[5:]
            if not c.proc_alive(name):
                return SKIP if last_try else False
            c.kill_proc(name)
            start = c.start_memcached if name == "memcached" else c.start_mariadb
            return lambda: c.proc_alive(name) or start()
        if kind == "isolate_node":
            net.isolate(pick)
            return lambda: net.rejoin(pick)
        if kind == "cut_link":
            other = rng.choice([j for j in nodes if j != pick])
            i, j = sorted((pick, other))
            net.cut(i, j)
            return lambda: net.join(i, j)
        if kind == "slow_link":
            net.slow(pick, rng.choice((50, 200, 500)), rng.choice((256, 1024, 4096)))
            return lambda: net.fast(pick)
        if kind == "disk_full":
            n = c.nodes[pick - 1]
            n.fill(rng.choice((0, 4096, 16384, 65536)))
            return lambda: n.unfill()
        raise ValueError(kind)

    def pick_faults(self):
        kinds = list(FAULTS)
        weights = [FAULTS[k] for k in kinds]
        first = self.rng.choices(kinds, weights)[0]
        if self.rng.random() < 0.2:
            second = self.rng.choices(kinds, weights)[0]
            if second != first:
                return [first, second]
        return [first]

    # -- a round -----------------------------------------------------------
    def round(self, r):
        """Workers on random nodes; a fault or two at random moments, each
        undone later in the round or, one time in four, some rounds later."""
        a, rng = self.a, self.rng
        self.r = r
        L = a.round_ms / 1000.0
        t0 = time.monotonic()
        for due, fn in [x for x in self.deferred if x[0] <= r]:
            self.deferred.remove((due, fn))
            fn()
        workers = []
        for _ in range(rng.randint(2, 2 + a.nodes)):
            node = rng.randint(1, a.nodes)
            ops = self.plan(node)
            if ops:
                workers.append(self.spawn(node, ops))
        events = []                     # (time, seq, what, kind, undo)
        for seq, kind in enumerate(self.pick_faults()):
            events.append((rng.uniform(0.05, 0.6) * L, seq, "inject", kind, None))
        seq = len(events)
        while events:
            events.sort(key=lambda e: e[:2])
            at, _, what, kind, fn = events.pop(0)
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if what == "heal":
                fn()
                continue
            last_try = at >= L
            try:
                got = self.inject(kind, workers, last_try)
            except netmod.NetError as e:
                log("round %d: %s not injected: %s" % (r, kind, e))
                continue
            if got is SKIP:
                self.stats["faults with nothing to hit"] += 1
                continue
            if got is False:
                events.append((at + 0.02, seq, "inject", kind, None))
                seq += 1
                continue
            self.faults[kind] += 1
            if not got:
                continue
            if rng.random() < 0.25:
                self.deferred.append((r + rng.randint(1, 4), got))
                self.stats["faults lasting into later rounds"] += 1
            else:
                events.append((at + rng.uniform(0.2, 1.0) * L, seq, "heal", kind, got))
                seq += 1
        left = L - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
        deadline = time.monotonic() + 20
        for w in workers:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
                w.killed = True
                self.stats["workers stopped after 20 s"] += 1
        for w in workers:
            self.collect(w)
        self.check_enoent()
        self.reap_agents("round %d" % r)
        found, temps, unknown = self.scan()
        self.look_for_torn(found, "round %d" % r)

    # -- settling and checking ------------------------------------------
    def restore(self):
        """Undo every fault: links, disks, killed servers and agents."""
        for due, fn in self.deferred:
            fn()
        self.deferred = []
        self.net.heal()
        for n in self.c.nodes:
            n.unfill()
        if not self.c.proc_alive("memcached"):
            self.c.procs.pop("memcached", None)
            self.c.start_memcached()
        if not self.c.proc_alive("mariadb"):
            self.c.procs.pop("mariadb", None)
            self.c.start_mariadb()
        self.reap_agents("checkpoint")
        for n in self.c.nodes:
            if not n.agent_alive():
                n.start_serve_nowait()
        cl.wait_for(lambda: all(n.health() == 200 for n in self.c.nodes), 30, "every agent")

    def reap_agents(self, when):
        """Agents that died without being killed: a crash, reported with
        the end of its log, and started again."""
        for n in self.c.nodes:
            if n.agent_alive() or n.killed or n.serve is None:
                continue
            rc = n.serve.returncode
            tail = open(os.path.join(n.home, "serve.log"), errors="replace").read().splitlines()[-5:]
            self.crashes.append("%s: node%d's agent exited by itself (status %s); its log ends:\n%s"
                                % (when, n.index, rc, "\n".join("    " + t for t in tail)))
            n.start_serve_nowait()

    def finish_writes(self):
        """What a client does after an error: write again every path whose
        last write was not acknowledged, and remove temporary files a
        killed writer left.  No fault meanwhile."""
        for attempt in range(5):
            per_node = collections.defaultdict(list)
            for rel, path in self.paths.items():
                if path.retry:
                    v = self.new_version(path, path.home, "inplace")
                    path.busy = True
                    per_node[path.home].append(self.write_op(v))
            for node, rel in sorted(self.leftover_tmps):
                per_node[node].append({"op": "unlink", "rel": rel, "tmpleft": True,
                                       "path": os.path.join(self.c.nodes[node - 1].dir, rel)})
            if not per_node:
                return True
            workers = [self.spawn(node, ops) for node, ops in per_node.items()]
            for w in workers:
                w.proc.wait(120)
                self.collect_finish(w)
        return False

    def collect_finish(self, w):
        events = w.events()
        gone = {e["path"] for e in events if e["ev"] == "unlinked"}
        gone |= {e["path"] for e in events if e["ev"] == "fail" and e["op"] == "unlink"
                 and e["err"] == "ENOENT"}
        tmp_ops = [op for op in w.ops if op.get("tmpleft")]
        for op in tmp_ops:
            if op["path"] in gone:
                self.leftover_tmps.discard((w.node, op["rel"]))
        w.ops = [op for op in w.ops if not op.get("tmpleft")]
        self.collect(w)
        self.stats["writes redone after a fault"] += sum(1 for op in w.ops)

    def checkpoint(self, r):
        t0 = time.monotonic()
        self.restore()
        finished = self.finish_writes()
        deadline = time.monotonic() + self.a.converge
        while True:
            found, temps, unknown = self.scan()
            self.look_for_torn(found, "checkpoint after round %d" % r)
            v = self.verdict(found, temps, unknown)
            settled = not (v["lost"] or v["under"] or v["stale"] or v["temps"] or v["tmps left"])
            if settled or time.monotonic() > deadline:
                break
            time.sleep(1)
        v["seconds"] = time.monotonic() - t0
        v["converged"] = settled
        v["finished"] = finished
        v["round"] = r
        self.checkpoints.append(v)
        log("checkpoint after round %d: %d files checked (+%d deleted), converged %s in %.1f s; "
            "lost %d, under-replicated %d, stale %d, temporary %d, torn so far %d"
            % (r, v["checked"], v["deleted checked"], "yes" if settled else "NO", v["seconds"],
               len(v["lost"]), len(v["under"]), len(v["stale"]), len(v["temps"]),
               len(self.torn_seen)))
        if not settled:
            self.explain(v)
        return v

    def explain(self, v):
        for key in ("lost", "under", "stale", "temps", "tmps left", "unknown"):
            for item in v[key][:10]:
                log("  %s: %r" % (key, item))
            if len(v[key]) > 10:
                log("  %s: ... %d more" % (key, len(v[key]) - 10))


def cl_file_sha(path):
    try:
        with open(path, "rb") as f:
            return content.sha(f.read())
    except (FileNotFoundError, NotADirectoryError):
        return None


# ---- main --------------------------------------------------------------------

def totals(run):
    cps = run.checkpoints
    t = {k: sum(len(v[k]) for v in cps)
         for k in ("lost", "under", "stale", "temps", "tmps left", "unknown")}
    t["checked"] = sum(v["checked"] + v["deleted checked"] for v in cps)
    return t


def checks(run, args):
    """(name, passed) for each check the run makes, the clean-up aside."""
    t, cps = totals(run), run.checkpoints
    return [
        ("every checkpoint converged within %d s" % args.converge,
         bool(cps) and all(v["converged"] for v in cps)),
        ("every write cut short by a fault written again once faults stopped",
         bool(cps) and all(v["finished"] for v in cps)),
        ("no acknowledged write lost", t["lost"] == 0),
        ("every acknowledged write on >= %d nodes with its SHA-256" % args.replicas,
         t["under"] == 0),
        ("no torn or mixed file, on disk or read", not run.torn_seen),
        ("no temporary file left (%s)" % TEMP_PATTERN.pattern, t["temps"] == 0),
        ("no stale copy or deleted file left", t["stale"] == 0 and t["tmps left"] == 0),
        ("no file nobody wrote", t["unknown"] == 0),
        ("no agent died on its own", not run.crashes),
    ]


def report(run, args, started, elapsed, shaper, log_counts, cleanup_errors):
    cps = run.checkpoints
    last = cps[-1]
    t = totals(run)
    print("== fault-injection report")
    print("command: tests/faults/run --rounds %d --seed %d --nodes %d --replicas %d%s%s%s"
          % (args.rounds, args.seed, args.nodes, args.replicas,
             " --check-every %d" % args.check_every if args.check_every else "",
             " --round-ms %d" % args.round_ms if args.round_ms != 800 else "",
             " --spool-on-disk" if args.spool_on_disk else ""))
    print("started: %s UTC, took %.0f s" % (started, elapsed))
    print("slow links: %s" % ("netem delay + rate" if shaper == "netem" else
                              "tbf rate limit (this kernel has no netem)"))
    print("rounds: %d" % args.rounds)
    print("faults injected: %d (%s)" % (sum(run.faults.values()),
          ", ".join("%s %d" % (k, run.faults[k]) for k in FAULTS)))
    always = ("writes acknowledged", "writes killed mid-way", "writes failed",
              "writes redone after a fault", "deletes acknowledged", "reads", "reads whole",
              "reads of a write cut short", "reads torn",
              "reads of a settled file answered ENOENT")
    for k in always + tuple(sorted(set(run.stats) - set(always))):
        print("%s: %d" % (k, run.stats[k]))
    for k in sorted(log_counts):
        print("agent logs, %s: %d" % (k, log_counts[k]))
    print("checkpoints: %d" % len(cps))
    print("files checked: %d at the end (%d of them deleted ones), %d over all checkpoints"
          % (last["checked"] + last["deleted checked"], last["deleted checked"], t["checked"]))
    print("files lost: %d" % t["lost"])
    print("files under-replicated (fewer than %d good copies): %d" % (args.replicas, t["under"]))
    print("torn files seen: %d" % len(run.torn_seen))
    print("temporary files left: %d" % t["temps"])
    print("stale copies left: %d" % (t["stale"] + t["tmps left"]))
    for x in run.torn_seen[:20]:
        print("# torn: " + x)
    for x in run.crashes[:10]:
        print("# crash: " + x)
    for x in run.dishonest[:10]:
        print("# ENOENT for a settled file: " + x)
    results = checks(run, args) + [("faults undone, namespaces and mounts removed",
                                    not cleanup_errors)]
    passed = failed = 0
    for i, (name, ok) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        passed += ok
        failed += not ok
    for e in cleanup_errors:
        print("#   " + e)
    print("%d passed, %d failed" % (passed, failed))
    return failed == 0


LOG_COUNTS = {   # what the agents' logs say: a pattern per kind of event
    "ENOSPC during a fetch": re.compile(r"warn: fetch \S+: No space left on device"),
    "ENOSPC during a received push": re.compile(r"error: \S+: No space left on device"),
    "pushes received not completed, dropped": re.compile(r"push not completed; dropped"),
    "registry unreachable": re.compile(r"unreachable"),
}
LEFTOVERS = re.compile(r"removed (\d+) temporary files? an earlier run left")


def count_logs(c):
    """How often the agents met what the faults are meant to cause."""
    counts = collections.Counter()
    for n in c.nodes:
        try:
            text = open(os.path.join(n.home, "serve.log"), errors="replace").read()
        except FileNotFoundError:
            continue
        for k, pat in LOG_COUNTS.items():
            counts[k] += len(pat.findall(text))
        counts["temporary files a killed agent left, removed at its restart"] += \
            sum(int(x) for x in LEFTOVERS.findall(text))
    return counts


def main():
    ap = argparse.ArgumentParser(prog="tests/faults/run")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--check-every", type=int, default=0,
                    help="also settle and check after every N rounds")
    ap.add_argument("--round-ms", type=int, default=800)
    ap.add_argument("--converge", type=int, default=90,
                    help="seconds the cluster gets to settle at a checkpoint")
    ap.add_argument("--max-paths", type=int, default=150)
    ap.add_argument("--spool-on-disk", action="store_true",
                    help="each node's spool on the same tmpfs as its directory, so that"
                         " disk_full fills both")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(3), "big")
    if args.nodes < 2 or args.replicas < 1 or args.replicas > args.nodes:
        ap.error("need 2 or more nodes and 1 <= replicas <= nodes")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    t0 = time.monotonic()
    print("# seed %d: tests/faults/run --rounds %d --seed %d --nodes %d --replicas %d"
          % (args.seed, args.rounds, args.seed, args.nodes, args.replicas), flush=True)

    for name in netmod.sweep_dead():
        log("removed %s, left by an earlier run" % name)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    net = netmod.Net(args.nodes)
    c = run = None
    counts = {}
    error = None
    cleanup_errors = []
    try:
        try:
            net.setup()
        except (netmod.NetError, OSError) as e:
            cleanup_errors += net.teardown()
            print("not ok 1 - network namespaces, veth pairs and a bridge can be made here")
            print("#   " + str(e))
            print("#   the fault suite needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN"
                  " (ip netns add, ip link add type veth, mount -t tmpfs): it does not run"
                  " without them")
            print("0 passed, 1 failed")
            return 1
        log("network: bridge %s %s/24, nodes in namespaces %s-1..%d; slow links by %s"
            % (net.bridge, net.host, net.tag, args.nodes, net.shaper))
        c = FaultCluster(net, args.nodes, args.replicas, args.spool_on_disk)
        c.start()
        run = Run(args, c)
        for r in range(1, args.rounds + 1):
            run.round(r)
            if r % 50 == 0:
                log("round %d: %d faults so far, %d writes acknowledged, %d paths"
                    % (r, sum(run.faults.values()), run.stats["writes acknowledged"],
                       len(run.paths)))
            if args.check_every and r % args.check_every == 0 and r != args.rounds:
                run.checkpoint(r)
        run.checkpoint(args.rounds)
        counts = count_logs(c)
        if not all(ok for _, ok in checks(run, args)):
            os.environ["CS_KEEP_TMP"] = "1"     # the agents' logs, for whoever looks
    except BaseException as e:                  # report, clean up, fail
        error = e
        os.environ["CS_KEEP_TMP"] = "1"
        traceback.print_exc()
    finally:
        try:
            net.heal()
        except netmod.NetError as e:
            cleanup_errors.append(str(e))
        if c is not None:
            c.stop()
        cleanup_errors += net.teardown()
    if error is not None:
        print("not ok 1 - the run ended early: %s" % (error or type(error).__name__))
        print("0 passed, 1 failed")
        return 1
    ok = report(run, args, started, time.monotonic() - t0, net.shaper, counts, cleanup_errors)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
