"""test_long_jobs.py - repair and verify at scale, as an operator sees
them: each walks only the copies its node holds, keeps its place in the
spool and goes on from there after a restart or an interruption, and an
agent at rest does not ask the registry more when it holds more files
that are not its own.

Real memcached and MariaDB, two nodes (no web server), CS_REPLICAS=2.
The agents' repair pushes at 4 KiB/s (CS_REPAIR_RATE), slow enough to
restart one midway; their background verify is off.  Files are put on
node1's disk and imported (one copy, node1's), so node1's repair makes
the second.  The tests run in order on one cluster.  Prints TAP-style
lines and ends with "N passed, N failed".
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, as_web_user  # noqa: E402
from tap import expect, run, eventually  # noqa: E402

REPLICAS = 2
FILES = 32              # of 1 KiB: two rounds of 16 pushes at 4 KiB/s
SIZE = 1024
FAKE = 20000            # files the registry gets by SQL, held by nodes that are not running


def cursor(node, name):
    """The walk kept in node's spool under name: dict of its numbers."""
    try:
        with open(os.path.join(node.spool, name + ".cursor")) as f:
            words = f.read().split()
    except OSError:
        return {}
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def ids(c, prefix):
    out = c.sql("SELECT id FROM files WHERE path LIKE '%s/%%' ORDER BY id" % prefix,
                db="cs").stdout.split()
    return [int(x) for x in out]


def copies(c, prefix):
    """How many of prefix/'s files have R pinned current copies."""
    out = c.sql("SELECT COUNT(*) FROM (SELECT f.id FROM files f JOIN replicas r ON"
                " r.file_id=f.id AND r.version=f.version AND r.stale=0 AND r.pinned=1"
                " WHERE f.path LIKE '%s/%%' AND f.deleted=0 GROUP BY f.id HAVING"
                " COUNT(*) >= %d) x" % (prefix, REPLICAS), db="cs").stdout.split()
    return int(out[-1])


def log_of(node):
    with open(os.path.join(node.home, "serve.log"), errors="replace") as f:
        return f.read()


def test_repair_goes_on_after_a_restart(c):
    """node1 repairs its imported files at 4 KiB/s; restarted midway, its
    walk goes on after the last file it had done, not from the first, and
    every file ends with its copies."""
    n1 = c.nodes[0]
    for i in range(FILES):
        n1.put("lj/f%02d.bin" % i, (b"%02d" % i) * (SIZE // 2))
    n1.import_ns()
    mine = ids(c, "lj")
    expect(len(mine) == FILES, "imported", FILES, len(mine))
    # Kept within a batch: a place past the first file, short of the last.
    midway = lambda: mine[0] <= cursor(n1, "repair").get("after", 0) < mine[-1]
    expect(eventually(midway, 30), "repair's place kept midway", mine, cursor(n1, "repair"))
    expect(copies(c, "lj") < FILES, "not all repaired yet", "<%d" % FILES, copies(c, "lj"))
    n1.stop_serve()
    kept = cursor(n1, "repair")
    n1.start_serve()
    line = "going on with lap %d after file id %d" % (kept["lap"], kept["after"])
    expect(eventually(lambda: line in log_of(n1), 10), "the restarted walk says where it goes on",
           line, [x for x in log_of(n1).splitlines() if "repair" in x][-5:])
    expect(eventually(lambda: copies(c, "lj") == FILES, 30), "every file has its copies",
           FILES, copies(c, "lj"))


def test_verify_goes_on_after_an_interruption(c):
    """cs-replicate verify killed midway keeps its place; the next run goes
    on from it and says so; --from-start checks every copy again."""
    n1 = c.nodes[0]
    p = subprocess.Popen([c.bin, "verify", "--rate", "4K"], env=n1.env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=as_web_user())
    try:
        expect(eventually(lambda: cursor(n1, "verify-command").get("after", 0) > 0, 15),
               "verify's place kept midway", ">0", cursor(n1, "verify-command"))
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    kept = cursor(n1, "verify-command")
    expect(0 < kept["done"] < FILES, "some copies checked", FILES, kept)
    p = n1.cs("verify", "--rate", "max", "--json", check=False)
    got = json.loads(p.stdout)
    expect(p.returncode == 0 and got["resumed_copies"] == kept["done"] and
           got["copies"] == FILES - kept["done"], "the next run checks only the rest",
           (0, kept["done"], FILES - kept["done"]), (p.returncode, got, p.stderr))
    p = n1.cs("verify", "--rate", "max", check=False)
    expect(p.returncode == 0 and "verify: %d copies" % FILES in p.stdout
           and "earlier run" not in p.stdout, "a whole pass after a whole pass", FILES, p.stdout)
    p = n1.cs("verify", "--rate", "max", "--from-start", "--json", check=False)
    expect(json.loads(p.stdout)["copies"] == FILES, "--from-start checks all", FILES, p.stdout)


def own_user(node):
    """node's agent logs in to MariaDB as a user of its own (csN), so
    that the server counts its statements apart (USER_STATISTICS)."""
    c, user = node.cluster, "cs%d" % node.index
    for host in ("%", "localhost"):
        c.sql("CREATE USER IF NOT EXISTS '{0}'@'{1}' IDENTIFIED BY '{2}';"
              "GRANT SELECT, INSERT, UPDATE, DELETE ON cs.* TO '{0}'@'{1}'"
              .format(user, host, c.mysql_password))
    return {"CS_MYSQL": c.mysql_url.replace("mysql://cs:", "mysql://%s:" % user, 1)}


def user_status(c, user):
    """user's statements so far, and the rows the server read for them."""
    out = c.sql("SELECT SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS, ROWS_READ"
                " FROM information_schema.USER_STATISTICS WHERE USER='%s'" % user).stdout.split()
    return (int(out[0]), int(out[1])) if out else (0, 0)


def test_registry_statements_at_rest(c):
    """The registry statements an agent makes at rest, and the rows it has
    the server read, do not grow with files it does not hold: 20,000 files
    held by two nodes that run no agent (their heartbeats set ahead) cost
    it nothing.  (When every agent paged through every file, that was 4
    more statements per agent every 5 s here, and each read 5,000 files
    and their holders.)  The agent that walks the census is left out: it
    reads every file by design, one walk at a time (test_census.py)."""
    window = 10
    c.sql("SET GLOBAL userstat=1")
    walker = c.sql("SELECT n.name FROM census s JOIN nodes n ON n.id=s.counted_by",
                   db="cs").stdout.strip()
    node = next(n for n in c.nodes if n.name != walker)
    user = "cs%d" % node.index

    def per_window():
        q, rows = user_status(c, user)
        time.sleep(window)
        q2, rows2 = user_status(c, user)
        return q2 - q, rows2 - rows

    time.sleep(3)
    base, base_rows = per_window()
    c.sql("INSERT INTO nodes (name, url, heartbeat_at) VALUES"
          " ('fake1', '', NOW(3) + INTERVAL 1 DAY), ('fake2', '', NOW(3) + INTERVAL 1 DAY);"
          "INSERT INTO files (path_hash, namespace, path, version, size, mtime_ns, sha256,"
          " updated_at) SELECT UNHEX(SHA2(CONCAT('%s', 0x00, 'fake/', seq), 256)), '%s',"
          " CONCAT('fake/', seq), 1, 1, 0, UNHEX(SHA2(seq, 256)), NOW(3) - INTERVAL 1 HOUR"
          " FROM seq_1_to_%d;"
          "INSERT INTO replicas (file_id, node_id, version, size) SELECT f.id, n.id, 1, 1"
          " FROM files f JOIN nodes n ON n.name IN ('fake1', 'fake2')"
          " WHERE f.path LIKE 'fake/%%';" % (c.namespace, c.namespace, FAKE), db="cs")
    # Registered an hour ago as far as the agents' indexes go: their
    # polls for new names, which read again every name of the last 2 s
    # they saw, are not what is measured.
    time.sleep(3)
    more, more_rows = per_window()
    print("# %s at rest (%s walks the census), per %d s: %d statements and %d rows read"
          " with %d files, %d and %d with %d"
          % (node.name, walker, window, base, base_rows, FILES, more, more_rows, FAKE + FILES))
    expect(more <= base * 1.1 + 10, "no more statements with more files not held here",
           "<= %d" % (base * 1.1 + 10), more)
    expect(more_rows <= base_rows * 1.5 + FAKE // 10, "no more rows read for them",
           "<= %d" % (base_rows * 1.5 + FAKE // 10), more_rows)


if __name__ == "__main__":
    sys.exit(run([test_repair_goes_on_after_a_restart,
                  test_verify_goes_on_after_an_interruption,
                  test_registry_statements_at_rest],
                 Cluster(nodes=2, nginx=False, log_level="info", node_env=own_user,
                         extra_env={"CS_REPLICAS": str(REPLICAS), "CS_REPAIR_RATE": "4K",
                                    "CS_VERIFY_RATE": "off", "CS_VERIFY_SETTLE": "0"})))
