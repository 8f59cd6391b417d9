"""test_growth.py - nginx under the library does not grow per request.

node1's nginx (two workers as www-data, LD_PRELOAD=libcs.so, its plain
location open to PUT, DELETE and MOVE) serves a steady mix driven by wrk
(tests/integration/growth.lua): 20 % 404s of names never registered (the
index answers), 1 % misses of files only node2 holds (the agent fetches
each), 1 % writes (PUT) and 1 % DELETEs and MOVEs of what was PUT, the
rest hits.
A warm-up of 10,000 requests (repeated, 5 times at most, until each
worker has served: the kernel may give one worker every connection of a
run, and a worker's first requests take memory once, 16 kB), then the run in 4
slices; each worker's memory is read after each (/proc/PID/status,
smaps_rollup, its descriptors).  Asserted: the same two workers
throughout, no answer but 2xx and the 404s, each miss one transfer from
node2, what the workers wrote, deleted and moved is what the registry
has, the same descriptors, and over the second half of the run less than
1 byte of anonymous memory (heap, stacks) and of resident memory per
request, both workers together (one page in 50,000 requests is 0.08).

    python3 tests/integration/test_growth.py            # 100,000 requests, ~15 s
    CS_GROWTH_REQUESTS=1000000 python3 tests/integration/test_growth.py   # the long run

run as root (tests/run does).  CS_GROWTH_REQUESTS is the number of
requests measured, after the warm-up.  Prints TAP-style lines, the
figures as comments, and ends with "N passed, N failed".
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402
from tap import expect, run, drain  # noqa: E402

REQUESTS = int(os.environ.get("CS_GROWTH_REQUESTS", "100000"))
WARMUP = min(10000, REQUESTS // 4)
WARMUP_ROUNDS = 5           # at most, until each worker has used WARM_CPU
WARM_CPU = 0.1              # s
SLICES = 4
CONNECTIONS = 8
MISS_EVERY = 100            # growth.lua: a miss at each 100th request
LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "growth.lua")
# kB fields of /proc/PID/status and smaps_rollup read after each slice
STATUS = ("VmRSS", "RssAnon", "RssFile", "VmSize")
ROLLUP = ("Pss", "Private_Dirty")
BOUND = 1.0                 # bytes per request, second half


def workers(node):
    master = node.nginx.pid
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        return sorted(int(p) for p in f.read().split())


def memory(pid):
    """{field: kB} for STATUS and ROLLUP, "fds": descriptors open, "cpu":
    CPU seconds used so far (to show that both workers served)."""
    got = {}
    for name, fields in (("status", STATUS), ("smaps_rollup", ROLLUP)):
        with open("/proc/%d/%s" % (pid, name)) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in fields:
                    got[key] = int(rest.split()[0])
    got["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    with open("/proc/%d/stat" % pid) as f:
        ticks = f.read().rsplit(")", 1)[1].split()[11:13]       # utime, stime
    got["cpu"] = sum(map(int, ticks)) / os.sysconf("SC_CLK_TCK")
    return got


def state(snap):
    return "; ".join("worker %d: RSS %d kB, anon %d kB, PSS %d kB, %d fds, %.1f s CPU" % (
        p, m["VmRSS"], m["RssAnon"], m["Pss"], m["fds"], m["cpu"]) for p, m in snap.items())


def wrk(node, n, name, miss_from, misses):
    """n responses of growth.lua's mix from node's nginx: (seconds, 2xx,
    404, other)."""
    with tempfile.NamedTemporaryFile("r", prefix="growth.") as out:
        p = subprocess.run(["wrk", "-t1", "-c%d" % CONNECTIONS, "-d3600s", "-s", LUA,
                            "http://127.0.0.1:%d/" % node.port, "--", str(n), name,
                            str(miss_from), str(misses), out.name],
                           capture_output=True, text=True, timeout=3600)
        line = out.read().split()
    expect(len(line) == 5, "wrk ran %d requests (%s)" % (n, name), "a summary line",
           (p.returncode, line, p.stdout[-300:], p.stderr[-300:]))
    got, seconds, ok, absent, other = int(line[0]), float(line[1]), *map(int, line[2:])
    expect(got == n and other == 0, "%s: %d answers, each 2xx or 404" % (name, n),
           (n, 0), (got, other))
    want = n * 40 // 200
    expect(abs(absent - want) <= 2 * CONNECTIONS + 2, "%s: a fifth of the answers are 404s" % name,
           want, absent)
    return seconds


def test_nginx_workers_do_not_grow(c):
    n1, n2 = c.nodes[0], c.nodes[1]
    n1.stop_nginx()
    n1.start_nginx(dav=True)
    for i in range(64):
        n1.put("hit/%d.bin" % i, os.urandom(8192))
    n1.import_ns()
    slice_n = REQUESTS // SLICES
    misses = slice_n // MISS_EVERY
    total_misses = WARMUP_ROUNDS * (WARMUP // MISS_EVERY) + SLICES * misses
    for k in range(total_misses):
        n2.put("miss/m%d.bin" % k, os.urandom(2048))
    n2.import_ns()
    n1.mkdir("w")
    pids = workers(n1)
    expect(len(pids) == 2, "nginx runs two workers", 2, pids)
    served = n2.stats()["files_served"]
    done = 0
    # Until each worker has served (the kernel may hand every connection
    # of a run to one): a worker's first requests take memory once.
    for r in range(WARMUP_ROUNDS):
        seconds = wrk(n1, WARMUP, "warmup%d" % r, done, WARMUP // MISS_EVERY)
        done += WARMUP // MISS_EVERY
        snaps = [{p: memory(p) for p in pids}]
        print("# warm-up %d: %d requests in %.1f s; %s" % (r + 1, WARMUP, seconds,
                                                            state(snaps[0])), flush=True)
        if all(m["cpu"] >= WARM_CPU for m in snaps[0].values()):
            break
    for s in range(SLICES):
        seconds = wrk(n1, slice_n, "slice%d" % s, done, misses)
        done += misses
        snaps.append({p: memory(p) for p in pids})
        print("# slice %d: %d requests in %.1f s (%.0f/s); %s" % (
            s + 1, slice_n, seconds, slice_n / seconds, state(snaps[-1])), flush=True)
    expect(workers(n1) == pids, "the same two workers served the whole run", pids, workers(n1))
    fetched = sum(os.path.exists(os.path.join(n1.dir, "miss/m%d.bin" % k)) for k in range(done))
    expect(fetched == done, "every miss requested was fetched", done, fetched)
    transfers = n2.stats()["files_served"] - served
    expect(transfers == done, "one transfer from node2 per miss", done, transfers)
    drain(n1, 120)
    on_disk = sorted(os.path.relpath(os.path.join(d, f), n1.dir)
                     for d, _, fs in os.walk(os.path.join(n1.dir, "w")) for f in fs)
    registered = c.sql("SELECT path FROM files WHERE deleted=0 AND path LIKE 'w/%' ORDER BY path",
                       db="cs").stdout.split()
    expect(on_disk and sorted(registered) == on_disk,
           "what the workers wrote, deleted and moved is what the registry has",
           "%d files" % len(on_disk), "%d files" % len(registered))

    mid, end = snaps[SLICES // 2], snaps[-1]
    half = slice_n * (SLICES - SLICES // 2)

    def gained(a, b, key):
        return sum(b[p][key] - a[p][key] for p in pids)
    first = {key: gained(snaps[0], mid, key) * 1024 / (slice_n * (SLICES // 2))
             for key in ("VmRSS", "RssAnon", "Pss")}
    growth = {key: gained(mid, end, key) * 1024 / half for key in STATUS + ROLLUP}
    fds = gained(mid, end, "fds")
    print("# both workers, bytes per request: first half RSS %+.3f, anon %+.3f, PSS %+.3f; "
          "second half RSS %+.3f, anon %+.3f, file %+.3f, PSS %+.3f, private dirty %+.3f, "
          "virtual %+.3f; descriptors %+d" % (
              first["VmRSS"], first["RssAnon"], first["Pss"], growth["VmRSS"],
              growth["RssAnon"], growth["RssFile"], growth["Pss"], growth["Private_Dirty"],
              growth["VmSize"], fds), flush=True)
    expect(fds == 0, "no descriptor gained over the second half", 0, fds)
    for key in ("RssAnon", "VmRSS"):
        expect(growth[key] < BOUND, "%s grows < %g byte per request over the second half (%d)"
               % (key, BOUND, half), "< %g" % BOUND, round(growth[key], 3))


TESTS = [test_nginx_workers_do_not_grow]


def main():
    return run(TESTS, Cluster(nodes=2, extra_env={"CS_REPLICAS": "2", "CS_REPAIR_RATE": "off"}),
               logs=("serve.log", "nginx-error.log"))


if __name__ == "__main__":
    sys.exit(main())
