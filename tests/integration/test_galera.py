"""test_galera.py - the registry on a three-node MariaDB Galera cluster, as a
user sees it: CS_MYSQL names the three, every agent uses the first, and
when that one is killed (-9) under read and write load no write is lost,
no hit fails and misses come back within a few seconds (the gap is
measured and printed); the killed node rejoins and the agents go back to
it.  A node cut off from the others is passed over too.  A slow
statement is slow, not a dead registry.

Three Galera nodes on loopback (own datadirs and ports, Debian's galera-4,
incremental state transfer for a node that rejoins, rsync should it need a
whole one), the schema loaded once on the first, which bootstraps the
cluster, its datadir then copied for the other two; three ClusterStorage nodes with nginx, memcached
off so that every miss asks MySQL.  Galera's failure detection is
shortened for the test (a dead member is evicted after about 1 s where
the default is 5 s: commits wait for that, reads do not).  Prints
TAP-style lines and ends with "N passed, N failed".
"""
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, as_web_user, free_port, mariadb_template, wait_for  # noqa: E402
from tap import expect, run, eventually, mkdir_web, replicated  # noqa: E402

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
# evs: keepalive <= inactive check <= suspect <= inactive timeout
EVS = ("evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S;"
       "evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;evs.install_timeout=PT4S")


class GaleraCluster(Cluster):
    """A Cluster whose registry is three Galera nodes: g[0] bootstraps and
    gets the schema (Cluster.setup_database), g[1] and g[2] join it."""

    def init_mariadb(self):
        # The servers run as mysql, not root: rsync's daemon, which a
        # joining node starts for a state transfer, drops root's rights.
        self.gdir = os.path.join(self.tmp, "galera")
        os.makedirs(self.gdir)
        self.g = []
        for i in range(3):
            self.g.append({
                "name": "g%d" % (i + 1),
                "port": free_port(), "gcomm": free_port(), "ist": free_port(),
                "sst": free_port(),
                "datadir": os.path.join(self.gdir, "g%d" % (i + 1)),
                "socket": os.path.join(self.gdir, "g%d.sock" % (i + 1)),
            })
        subprocess.run(["cp", "-a", mariadb_template(), self.g[0]["datadir"]], check=True)
        subprocess.run(["chown", "-R", "mysql:mysql", self.gdir], check=True)
        self.datadir = self.g[0]["datadir"]
        self.mysql_socket = self.g[0]["socket"]
        self.mysql_port = self.g[0]["port"]

    sst = "rsync"

    def start_galera(self, i, new_cluster=False):
        g = self.g[i]
        peers = ",".join("127.0.0.1:%d" % x["gcomm"] for x in self.g)
        log = open(os.path.join(self.tmp, g["name"] + ".log"), "ab")
        argv = ["mariadbd", "--no-defaults", "--datadir=" + g["datadir"],
                "--socket=" + g["socket"], "--port=%d" % g["port"],
                "--bind-address=127.0.0.1", "--user=mysql", "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2", "--max-connections=200",
                "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
                "--wsrep-on=ON", "--wsrep-provider=" + PROVIDER,
                "--wsrep-cluster-name=cs-test", "--wsrep-node-name=" + g["name"],
                "--wsrep-cluster-address=gcomm://" + peers,
                "--wsrep-node-address=127.0.0.1:%d" % g["gcomm"],
                "--wsrep-node-incoming-address=127.0.0.1:%d" % g["port"],
                "--wsrep-sst-receive-address=127.0.0.1:%d" % g["sst"],
                "--wsrep-sst-method=" + self.sst,
                "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d;"
                "ist.recv_addr=127.0.0.1:%d;gcache.size=32M;%s"
                % (g["gcomm"], g["ist"], EVS)]
        if new_cluster:
            argv.append("--wsrep-new-cluster")
        self.procs[g["name"]] = subprocess.Popen(argv, stdout=log, stderr=log)

    def wait_synced(self, i, timeout=120):
        def synced():
            p = self.gsql(i, "SHOW STATUS LIKE 'wsrep_local_state_comment'", check=False)
            return p.returncode == 0 and "Synced" in p.stdout
        wait_for(synced, timeout, self.g[i]["name"] + " synced")

    def start_mariadb(self):
        self.start_galera(0, new_cluster=True)
        self.wait_synced(0)

    def setup_database(self):
        """The schema on g1, then g1 stopped and its datadir copied for g2
        and g3, so that they join with the same state and need no state
        transfer (an SST of a whole datadir takes far longer)."""
        super().setup_database()
        self.stop_proc("g1")
        for g in self.g[1:]:
            subprocess.run(["cp", "-a", self.g[0]["datadir"], g["datadir"]], check=True)
        # g1 bootstraps the cluster again; g2 and g3, having its state up
        # to the restart, need only what the restart itself added (an
        # incremental transfer).
        self.start_galera(0, new_cluster=True)
        self.wait_synced(0)
        for i in (1, 2):
            self.start_galera(i)
        for i in (1, 2):
            self.wait_synced(i)
        self.mysql_url = "mysql://cs:%s@%s/cs" % (
            self.mysql_password, ",".join("127.0.0.1:%d" % g["port"] for g in self.g))

    def gsql(self, i, statement, db=None, check=True):
        argv = ["mariadb", "--no-defaults", "-uroot", "--socket=" + self.g[i]["socket"],
                "-N", "-B", "-e", statement]
        if db:
            argv.append(db)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            raise RuntimeError("SQL on %s failed: %s\n%s" % (self.g[i]["name"], statement,
                                                             p.stderr))
        return p

    def stop_mariadb(self):
        for g in self.g:
            self.stop_proc(g["name"])

    def kill_galera(self, i):
        p = self.procs.pop(self.g[i]["name"])
        p.kill()
        p.wait()


def agent_connections(c, i):
    """Connections of the cs user on Galera node i (its process list)."""
    p = c.gsql(i, "SELECT COUNT(*) FROM information_schema.processlist WHERE user='cs'",
               check=False)
    return int(p.stdout.strip()) if p.returncode == 0 else -1


def test_agents_use_the_first_node(c):
    """All agents connect to the first server CS_MYSQL names."""
    for n in c.nodes:
        n1_file = "first/%s.txt" % n.name
        n.put(n1_file, b"x")
    c.nodes[0].import_ns()
    counts = [agent_connections(c, i) for i in range(3)]
    expect(counts[0] > 0 and counts[1] == 0 and counts[2] == 0,
           "the agents' connections are all on g1", "[>0, 0, 0]", counts)


def test_slow_statement_is_not_a_dead_registry(c):
    """A statement held up longer than the agent's 2 s read timeout (a row
    lock held from another connection) fails as slow: the agent does not
    call MySQL unreachable, and its misses keep working meanwhile."""
    n1, n2 = c.nodes[0], c.nodes[1]
    n1.put("slow/a.txt", b"slow a\n")
    n1.put("slow/b.txt", b"slow b\n")
    n1.import_ns()
    log = os.path.join(n1.home, "serve.log")
    before = len(open(log, errors="replace").read())
    # Hold the nodes table's rows on g1 for 4 s: heartbeats wait on them.
    holder = subprocess.Popen(
        ["mariadb", "--no-defaults", "-uroot", "--socket=" + c.g[0]["socket"], "cs", "-e",
         "START TRANSACTION; SELECT * FROM nodes FOR UPDATE; SELECT SLEEP(4); ROLLBACK;"],
        stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        t = time.monotonic()
        status, body = n2.get("/slow/a.txt")
        took = time.monotonic() - t
        expect(status == 200 and body == b"slow a\n", "a miss is served while heartbeats wait",
               200, status)
        holder.wait(30)
        time.sleep(2.5)         # a heartbeat after it
    finally:
        if holder.poll() is None:
            holder.kill()
    text = open(log, errors="replace").read()[before:]
    expect("MySQL unreachable" not in text, "no 'MySQL unreachable' for a slow statement",
           "no such line", text[-800:])
    expect("slow, not down" in text, "the agent says the statement was slow", "a line",
           text[-800:])
    expect(n2.get("/slow/b.txt")[0] == 200, "misses work after it")
    print("# miss during the held lock: %.3f s" % took)


def test_admin_timeout(c):
    """A command waits CS_ADMIN_TIMEOUT, not the agent's 2 s: status
    answers while a lock holds its scan up for 3 s; with CS_ADMIN_TIMEOUT=1
    it fails as slow, not as an unreachable registry."""
    n1 = c.nodes[0]
    lock = ("START TRANSACTION; SELECT * FROM nodes FOR UPDATE; SELECT SLEEP(3); ROLLBACK;")

    def held(env):
        holder = subprocess.Popen(["mariadb", "--no-defaults", "-uroot",
                                   "--socket=" + c.g[0]["socket"], "cs", "-e", lock],
                                  stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            t = time.monotonic()
            p = subprocess.run([c.bin, "node", "drain", "node1"], env=dict(n1.env(), **env),
                               capture_output=True, text=True, preexec_fn=as_web_user(),
                               timeout=60)
            return p, time.monotonic() - t
        finally:
            holder.wait(30)
            subprocess.run([c.bin, "node", "undrain", "node1"], env=n1.env(),
                           capture_output=True, preexec_fn=as_web_user(), timeout=60)
    p, took = held({})
    expect(p.returncode == 0, "node drain waits for a statement held up 3 s", 0,
           (p.returncode, p.stderr))
    p, took = held({"CS_ADMIN_TIMEOUT": "1"})
    expect(p.returncode == 1 and "timed out" in p.stderr,
           "with CS_ADMIN_TIMEOUT=1 it fails as timed out", "exit 1, timed out",
           (p.returncode, p.stderr))
    expect(took < 2.8, "after about 1 s", "< 2.8 s", round(took, 2))


def test_first_node_killed_under_load(c):
    """g1, which every agent uses, is killed (-9) while node3 reads (hits
    of its own files, misses of files on the others) and node1 writes:
    every hit is served, misses come back within a few seconds (the gap is
    printed), and every write is registered and reaches a second node."""
    n1, n2, n3 = c.nodes
    hot = os.urandom(8000)
    n3.put("load/hot.bin", hot)
    for i in range(400):
        n2.put("load/m%03d.bin" % i, b"miss %d\n" % i)
    n3.import_ns()
    n2.import_ns()
    d = mkdir_web(n1, "load/w")
    results = {"hit": [], "miss": []}      # (monotonic time, status)
    stop = threading.Event()

    def reader(kind):
        i = 0
        while not stop.is_set():
            t = time.monotonic()
            if kind == "hit":
                status, body = n3.get("/load/hot.bin", timeout=10)
                status = status if body == hot else -1
            else:
                status, _ = n3.get("/load/m%03d.bin" % i, timeout=10)
                i += 1
                if i == 400:
                    break
            results[kind].append((t, time.monotonic(), status))
            time.sleep(0.01)
    writes = 300
    writer = subprocess.Popen(["python3", "-c", """
import os, time
for i in range(%d):
    with open(os.path.join(%r, "w%%03d.txt" %% i), "w") as f:
        f.write("written %%d\\n" %% i)
    time.sleep(0.02)
""" % (writes, d)], env=n1.env(preload=True), preexec_fn=as_web_user())
    threads = [threading.Thread(target=reader, args=(k,)) for k in ("hit", "miss")]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        killed = time.monotonic()
        c.kill_galera(0)
        expect(writer.wait(60) == 0, "the writer ran through the kill")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    bad = [s for _, _, s in results["hit"] if s != 200]
    expect(bad == [], "every hit served", [], bad[:5] + ["of %d" % len(results["hit"])])
    after = [(t, e, s) for t, e, s in results["miss"] if t >= killed]
    ok = [e for t, e, s in after if s == 200]
    failed = [s for t, e, s in after if s != 200]
    expect(ok, "misses served after the kill", "some", after[:5])
    gap = ok[0] - killed
    print("# misses: %d before the kill, %d after (%d failed: %s); first served %.3f s after"
          " the kill" % (len(results["miss"]) - len(after), len(after), len(failed),
                         sorted(set(failed)), gap))
    expect(gap < 5.0, "misses recover within a few seconds", "< 5 s", round(gap, 3))
    expect(404 not in failed, "no miss answered 404", [], failed[:5])
    rels = ["load/w/w%03d.txt" % i for i in range(writes)]
    expect(eventually(lambda: replicated(c, rels), 60, 0.5),
           "every write made across the kill is on two nodes", "%d files" % writes,
           [r for r in rels if not replicated(c, [r])][:5])
    got = c.gsql(1, "SELECT COUNT(*) FROM files WHERE path LIKE 'load/w/%' AND deleted=0",
                 db="cs").stdout.strip()
    expect(got == str(writes), "every write registered", writes, got)
    log = "".join(open(os.path.join(n.home, "serve.log"), errors="replace").read()
                  for n in c.nodes)
    expect("MySQL unreachable" not in log, "no agent called MySQL unreachable",
           "no such line", [l for l in log.splitlines() if "unreachable" in l][:3])
    expect(re.search(r"MySQL server 127\.0\.0\.1:%d failing" % c.g[0]["port"], log),
           "the agents logged g1 failing", "a line", log[-600:])


def test_killed_node_rejoins_and_is_used_again(c):
    """g1 started again rejoins the cluster (state transfer), and the
    agents' connections go back to it."""
    t = time.monotonic()
    c.start_galera(0)
    c.wait_synced(0, 120)
    joined = time.monotonic() - t
    got = c.gsql(0, "SELECT COUNT(*) FROM files WHERE path LIKE 'load/w/%'", db="cs").stdout
    expect(got.strip() == "300", "g1 has the writes made while it was down", 300, got.strip())
    log = open(os.path.join(c.tmp, "g1.log"), errors="replace").read()
    how = "IST" if "IST received" in log or "Receiving IST" in log else "SST"
    print("# g1 rejoined in %.1f s (%s)" % (joined, how))
    synced = time.monotonic()

    def commits(i):
        return int(c.gsql(i, "SHOW GLOBAL STATUS LIKE 'wsrep_local_commits'").stdout.split()[1])

    def writes_on_g1(k=[0]):
        """A burst of registrations from every agent: committed on g1
        alone (a connection used after its 10 s on g2 moves back)."""
        before = [commits(i) for i in range(3)]
        k[0] += 1
        for n in c.nodes:
            n.put("back/%s-%d.txt" % (n.name, k[0]), b"back\n")
            n.import_ns()
        time.sleep(0.5)         # heartbeats, holder records
        done = [commits(i) - b for i, b in zip(range(3), before)]
        return done if done[0] > 0 and done[1] == 0 and done[2] == 0 else None
    ok = eventually(writes_on_g1, 40, 1)
    expect(ok, "the agents commit on g1 again", "g1 > 0, g2 0, g3 0", ok)
    print("# commits back on g1 %.1f s after it was synced" % (time.monotonic() - synced))


def test_sync_wait_cost(c):
    """What wsrep_sync_wait=1 (reads wait until the node applied every
    write committed anywhere before them) would cost a lookup: printed,
    not set (see README)."""
    stmt = ("SELECT id FROM files WHERE path_hash=UNHEX(SHA2('nothing',256));\n")
    n = 2000
    got = {}
    for wait in (0, 1):
        sql = "SET SESSION wsrep_sync_wait=%d;\n" % wait + stmt * n
        t = time.monotonic()
        p = subprocess.run(["mariadb", "--no-defaults", "-uroot", "--socket=" + c.g[1]["socket"],
                            "cs"], input=sql, capture_output=True, text=True, timeout=60)
        got[wait] = (time.monotonic() - t) / n * 1000
        expect(p.returncode == 0, "the lookups ran", 0, p.stderr[-300:])
    print("# a lookup on g2: %.3f ms, %.3f ms with wsrep_sync_wait=1" % (got[0], got[1]))


def test_node_cut_off_is_passed_over(c):
    """g1 cut off from the others (gmcast.isolate): it still takes
    connections but refuses statements (1047, not a ready member); the
    agents pass it over and misses keep working."""
    n2, n3 = c.nodes[1], c.nodes[2]
    for i in range(20):
        n2.put("cut/m%02d.bin" % i, b"cut %d\n" % i)
    n2.import_ns()
    c.gsql(0, "SET GLOBAL wsrep_provider_options='gmcast.isolate=1'")
    try:
        wait_for(lambda: "non-Primary" in c.gsql(0, "SHOW STATUS LIKE 'wsrep_cluster_status'",
                                                 check=False).stdout, 20, "g1 non-primary")
        got = [n3.get("/cut/m%02d.bin" % i)[0] for i in range(20)]
        expect(got == [200] * 20, "every miss served with g1 cut off", [200] * 20, got)
        log = open(os.path.join(n3.home, "serve.log"), errors="replace").read()
        # Refused as a statement's 1047, or found not ready (wsrep_ready
        # OFF) by a new connection's check: whichever came first.
        expect(re.search(r"MySQL server 127\.0\.0\.1:%d failing \((.*WSREP|not a ready member)"
                         % c.g[0]["port"], log), "node3 logged g1 failing as not ready", "a line",
               log[-600:])
    finally:
        c.gsql(0, "SET GLOBAL wsrep_provider_options='gmcast.isolate=0'", check=False)


TESTS = [
    test_agents_use_the_first_node,
    test_slow_statement_is_not_a_dead_registry,
    test_admin_timeout,
    test_first_node_killed_under_load,
    test_killed_node_rejoins_and_is_used_again,
    test_sync_wait_cost,
    test_node_cut_off_is_passed_over,
]

if __name__ == "__main__":
    sys.exit(run(TESTS, GaleraCluster(nodes=3, extra_env={"CS_MEMCACHED": "", "CS_REPAIR_RATE": "off"})))
