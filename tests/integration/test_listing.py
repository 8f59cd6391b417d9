"""test_listing.py - directory listings are cluster-wide: a program that
lists a directory under a prefix on a node that fetched nothing of it sees
every live file and subdirectory the cluster has there, each once, with the
right type; deleted files are not listed; a listed entry is fetched when
opened.  Tried with the programs users list with: ls, find, Python
(os.listdir, os.scandir, os.walk), PHP (scandir, glob, DirectoryIterator),
Apache's mod_autoindex, and git (clone on one node, fsck and log on
another).

Real memcached, MariaDB, three nodes with cs-replicate serve
(CS_REPLICAS=1), Apache on node 3; every program runs under the library as
the web user.  Prints
TAP-style lines and ends with "N passed, N failed".
"""
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, WEB_USER, as_web_user  # noqa: E402
from tap import expect, run, eventually, file_sha, sha  # noqa: E402

FILES = {}      # rel -> bytes, written on node 1 through the library


def write(node, rel, data):
    """rel written through the library on node (sh's redirect, as a host)."""
    node.mkdir(os.path.dirname(rel))
    p = host(node, ["sh", "-c", 'cat > "$1"', "sh", os.path.join(node.dir, rel)], input=data)
    expect(p.returncode == 0, "wrote " + rel, 0, p.stderr)
    FILES[rel] = data


def host(node, argv, env_extra=None, **kw):
    """argv under the library as the web user on node; HOME for git."""
    env = node.env(preload=True, HOME="/tmp", **(env_extra or {}))
    return subprocess.run(argv, env=env, capture_output=True, preexec_fn=as_web_user(),
                          timeout=120, **kw)


def out(node, argv, **kw):
    p = host(node, argv, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def local_names(node, rel):
    """What this node's disk holds there (read without the library)."""
    path = os.path.join(node.dir, rel)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def registered(c, rels):
    """Every rel registered live (its writer's agent read the journal)."""
    where = " OR ".join("path=X'%s'" % r.encode().hex() for r in rels)
    n = c.sql(db="cs", statement="SELECT COUNT(*) FROM files WHERE deleted=0 AND (%s)"
              % where).stdout.split()
    return int(n[-1]) == len(rels)


def test_setup(c):
    n1 = c.nodes[0]
    for i in range(12):
        write(n1, "gal/p%02d.jpg" % i, os.urandom(300 + i))
    write(n1, "gal/2026/a.jpg", b"a" * 50)
    write(n1, "gal/2026/deep/b.jpg", b"b" * 60)
    write(n1, "gal/gone/x.jpg", b"x")
    write(n1, "gal/caf\u00e9 1.jpg".encode().decode(), b"utf8 name")
    write(n1, "top.txt", b"top")
    expect(eventually(lambda: registered(c, list(FILES)), 20), "all registered")
    # A delete, and a directory whose only file is deleted.
    for rel in ("gal/p11.jpg", "gal/gone/x.jpg"):
        p = host(n1, ["rm", os.path.join(n1.dir, rel)])
        expect(p.returncode == 0, "deleted " + rel, 0, p.stderr)
        del FILES[rel]
    expect(eventually(lambda: c.sql(db="cs", statement="SELECT COUNT(*) FROM files WHERE"
                                    " deleted=1").stdout.split()[-1] == "2", 20),
           "two tombstones registered")
    expect(local_names(c.nodes[2], "gal") == [], "node 3 holds nothing of gal/", [],
           local_names(c.nodes[2], "gal"))


def want_gal():
    return sorted({rel.split("/")[1] for rel in FILES if rel.startswith("gal/")})


def test_ls(c):
    n3 = c.nodes[2]
    rc, so, se = out(n3, ["ls", "-1", os.path.join(n3.dir, "gal")])
    got = so.split("\n")[:-1]
    expect(rc == 0 and sorted(got) == want_gal(), "ls on node 3 lists every live name", want_gal(),
           (rc, got, se))
    expect("p11.jpg" not in got and "gone" not in got,
           "a deleted file, and a directory with only deleted files, not listed", None, got)
    rc, so, se = out(n3, ["ls", "-1", n3.dir])
    expect(rc == 0 and sorted(so.split()) == ["gal", "top.txt"], "ls of the namespace's top",
           ["gal", "top.txt"], (rc, so, se))
    # ls -l stats each entry: each is fetched, and shows its real size.
    rc, so, se = out(n3, ["ls", "-ln", os.path.join(n3.dir, "gal/2026")])
    expect(rc == 0 and re.search(r"^-.* 50 .* a\.jpg$", so, re.M) and
           re.search(r"^d.* deep$", so, re.M), "ls -l: a file with its size, a directory",
           None, (rc, so, se))
    expect(file_sha(os.path.join(n3.dir, "gal/2026/a.jpg")) == sha(FILES["gal/2026/a.jpg"]),
           "the stat fetched it")


def test_each_name_once(c):
    n2 = c.nodes[1]
    # Some local already (fetched), some not: each name once all the same.
    for rel in ("gal/p00.jpg", "gal/p03.jpg"):
        rc, so, se = out(n2, ["cat", os.path.join(n2.dir, rel)])
        expect(rc == 0, "read " + rel + " on node 2", 0, se)
    expect("p00.jpg" in local_names(n2, "gal"), "p00.jpg now local on node 2")
    rc, so, se = out(n2, ["ls", "-1a", os.path.join(n2.dir, "gal")])
    got = so.split("\n")[:-1]
    expect(rc == 0 and sorted(got) == sorted([".", ".."] + want_gal()),
           "ls -a: every name once, . and .. once", sorted([".", ".."] + want_gal()), got)


def test_find(c):
    n3 = c.nodes[2]
    base = os.path.join(n3.dir, "gal")
    rc, so, se = out(n3, ["find", base, "-name", "*.jpg", "-type", "f"])
    got = sorted(os.path.relpath(x, n3.dir) for x in so.split("\n")[:-1])
    want = sorted(r for r in FILES if r.startswith("gal/"))
    expect(rc == 0 and got == want, "find -type f: every live file, at every depth", want,
           (rc, got, se))
    rc, so, se = out(n3, ["find", base, "-type", "d"])
    got = sorted(os.path.relpath(x, n3.dir) for x in so.split("\n")[:-1])
    expect(got == ["gal", "gal/2026", "gal/2026/deep"], "find -type d", None, got)


PY = r"""
import json, os, sys
d = sys.argv[1]
print(json.dumps({
    "listdir": sorted(os.listdir(d)),
    "listdir_fd": sorted(os.listdir(os.open(d, os.O_RDONLY | os.O_DIRECTORY))),
    "scandir": sorted((e.name, e.is_dir(), e.is_file()) for e in os.scandir(d)),
    "walk": sorted((os.path.relpath(r, d), sorted(ds), sorted(fs)) for r, ds, fs in os.walk(d)),
}))
"""


def test_python(c):
    import json
    n3 = c.nodes[2]
    rc, so, se = out(n3, ["python3", "-c", PY, os.path.join(n3.dir, "gal")])
    expect(rc == 0, "python ran", 0, se)
    if rc:
        return
    r = json.loads(so)
    expect(r["listdir"] == want_gal(), "os.listdir(path)", want_gal(), r["listdir"])
    expect(r["listdir_fd"] == want_gal(), "os.listdir(fd) (fdopendir)", want_gal(), r["listdir_fd"])
    kinds = {name: (isdir, isfile) for name, isdir, isfile in r["scandir"]}
    expect(kinds.get("2026") == (True, False) and kinds.get("p05.jpg") == (False, True),
           "os.scandir: is_dir/is_file from d_type", None, kinds)
    files = sorted(os.path.relpath(r2, "gal") for r2 in FILES if r2.startswith("gal/"))
    walked = sorted(os.path.normpath(os.path.join(root, f)) for root, _, fs in r["walk"]
                    for f in fs)
    expect(walked == files, "os.walk finds every live file", files, walked)


PHP = r"""
$d = $argv[1];
$s = scandir($d);
$g = array_map('basename', glob("$d/*.jpg"));
$it = [];
foreach (new DirectoryIterator("$d/2026") as $f) if (!$f->isDot()) $it[] = $f->getFilename() . ($f->isDir() ? "/" : "");
sort($it);
echo json_encode(["scandir" => $s, "glob" => $g, "iter" => $it]);
"""


def test_php(c):
    import json
    n3 = c.nodes[2]
    rc, so, se = out(n3, ["php", "-r", PHP, os.path.join(n3.dir, "gal")])
    expect(rc == 0, "php ran", 0, se)
    if rc:
        return
    r = json.loads(so)
    expect(r["scandir"] == sorted([".", ".."] + want_gal()), "PHP scandir",
           sorted([".", ".."] + want_gal()), r["scandir"])
    jpgs = sorted(n for n in want_gal() if n.endswith(".jpg"))
    expect(sorted(r["glob"]) == jpgs, "PHP glob (libc glob)", jpgs, r["glob"])
    expect(r["iter"] == ["a.jpg", "deep/"], "PHP DirectoryIterator", ["a.jpg", "deep/"], r["iter"])


def test_apache_autoindex(c):
    n3 = c.nodes[2]
    n3.start_apache(mpm="event")
    try:
        st, body = n3.get_apache("/gal/2026/deep/")
        body = body.decode("utf-8", "replace")
        expect(st == 200 and 'href="b.jpg"' in body, "mod_autoindex lists a file node 3 lacks",
               200, (st, body[-400:]))
        st, body = n3.get_apache("/gal/")
        body = body.decode("utf-8", "replace")
        names = re.findall(r'href="([^"?/][^"]*)"', body)
        want = sorted(n + "/" if n in ("2026",) else n for n in want_gal())
        got = sorted(re.sub("%20", " ", re.sub("%c3%a9", "\u00e9", n, flags=re.I)) for n in names)
        expect(st == 200 and got == want, "mod_autoindex: every live name of gal/", want,
               (st, got))
        st, body = n3.get_apache("/gal/p07.jpg")
        expect(st == 200 and body == FILES["gal/p07.jpg"], "a listed file is served", 200, st)
    finally:
        n3.stop_apache()


def test_git_fsck_on_another_node(c):
    n1, n2 = c.nodes[0], c.nodes[1]
    src = tempfile.mkdtemp(prefix="cs-gitsrc.")
    os.chmod(src, 0o755)
    sh = ("set -e; cd %s; git init -q -b main .; for i in 1 2 3; do echo v$i > f$i.txt;"
          " mkdir -p d$i; echo $i > d$i/n.txt; git add -A; git -c user.name=t -c user.email=t@e"
          " commit -q -m c$i; done; git repack -q -d; echo loose > l.txt; git add l.txt;"
          " git -c user.name=t -c user.email=t@e commit -q -m loose") % src
    subprocess.run(["sh", "-c", sh], check=True, capture_output=True)
    subprocess.run(["chown", "-R", WEB_USER, src], check=True)
    n1.mkdir("")
    p = host(n1, ["git", "clone", "-q", "--no-hardlinks", "file://" + src,
                  os.path.join(n1.dir, "repo")])
    expect(p.returncode == 0, "git clone into the prefix on node 1", 0, p.stderr)
    objs = []
    for root, _, fs in os.walk(os.path.join(n1.dir, "repo")):
        objs += [os.path.relpath(os.path.join(root, f), n1.dir) for f in fs]
    expect(eventually(lambda: registered(c, objs), 30), "the clone's %d files registered"
           % len(objs), len(objs))
    repo2 = os.path.join(n2.dir, "repo")
    # The names reach node 2's index before they are registered (the
    # writer's agent announces them), or by its poll within a second when
    # an announcement was lost: a retry says which happened.
    tries = []
    def fsck():
        tries.append(host(n2, ["git", "-c", "safe.directory=*", "-C", repo2, "fsck", "--full",
                               "--strict"]))
        return tries[-1].returncode != 128
    eventually(fsck, 3, 0.2)
    p = tries[-1]
    if len(tries) > 1:
        print("# git -C on node 2 found no repo %d time(s) first: %s" % (
            len(tries) - 1, tries[0].stderr.decode()[-200:].strip()))
    expect(p.returncode == 0, "git fsck on node 2 exits 0", 0,
           (p.returncode, p.stdout[-300:], p.stderr[-600:]))
    expect(b"missing" not in p.stdout + p.stderr, "... and reports nothing missing", None,
           p.stderr[-300:])
    p = host(n2, ["git", "-c", "safe.directory=*", "-C", repo2, "log", "--oneline"])
    expect(p.returncode == 0 and len(p.stdout.split(b"\n")) - 1 == 4, "git log: 4 commits", 4,
           (p.returncode, p.stdout, p.stderr[-300:]))
    p = host(n2, ["git", "-c", "safe.directory=*", "-C", repo2, "status", "--porcelain"])
    expect(p.returncode == 0 and p.stdout == b"", "git status: a clean work tree on node 2", b"",
           (p.returncode, p.stdout[-300:], p.stderr[-300:]))


def test_delete_then_list_here(c):
    """A delete this node's agent has not registered yet is not listed
    back from the registry (the journal's pending entries are left out)."""
    n2 = c.nodes[1]
    shown = 0
    for i in range(30):
        rel = "race/r%02d.txt" % i
        write(n2, rel, b"r%d" % i)
    expect(eventually(lambda: registered(c, ["race/r%02d.txt" % i for i in range(30)]), 20),
           "registered")
    for i in range(30):
        rel = "race/r%02d.txt" % i
        rc, so, se = out(n2, ["sh", "-c", 'rm "$1" && ls -1 "$2"', "sh",
                              os.path.join(n2.dir, rel), os.path.join(n2.dir, "race")])
        if os.path.basename(rel) in so.split():
            shown += 1
        del FILES[rel]
    expect(shown == 0, "rm then ls at once: the name is gone every time (30 tries)", 0, shown)


MV_THEN_STAT = r"""
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
seen = []
for i in range(n):
    a, b = "%s/m%02d.txt" % (d, i), "%s/moved-m%02d.txt" % (d, i)
    if i % 2:
        os.unlink(a)
        b = None
    else:
        os.rename(a, b)
    try:
        os.lstat(a)
        seen.append("present")
    except FileNotFoundError:
        seen.append("absent")
    except OSError as e:
        seen.append("errno %d" % e.errno)
print(" ".join(seen))
"""


def test_mv_then_stat_old_name(c):
    """git mv stats the old name right after the rename: a miss, which must
    not fetch the file back from the registry's record before the rename
    is registered (the rename would then keep a file at the old name)."""
    n1 = c.nodes[0]
    rels = ["mv/m%02d.txt" % i for i in range(20)]
    for rel in rels:
        write(n1, rel, rel.encode())
    expect(eventually(lambda: registered(c, rels), 20), "registered")
    for n in c.nodes[1:]:           # a copy elsewhere to fetch back from
        for rel in rels:
            out(n, ["cat", os.path.join(n.dir, rel)])
    rc, so, se = out(n1, ["python3", "-c", MV_THEN_STAT, os.path.join(n1.dir, "mv"), "20"])
    expect(rc == 0 and so.split() == ["absent"] * 20,
           "rename or unlink, then lstat of the old name: ENOENT every time (20)", "absent",
           (rc, so, se[-300:]))
    live = lambda: c.sql(db="cs", statement="SELECT path FROM files WHERE deleted=0 AND path"
                         " LIKE 'mv/%'").stdout.split()
    want = sorted("mv/moved-m%02d.txt" % i for i in range(0, 20, 2))
    expect(eventually(lambda: sorted(live()) == want, 20),
           "the registry: old names gone, the new ones live", want, sorted(live()))
    for rel in rels:
        FILES.pop(rel, None)


def test_new_file_elsewhere_is_listed_soon(c):
    n1, n3 = c.nodes[0], c.nodes[2]
    d = os.path.join(n3.dir, "gal")
    out(n3, ["ls", d])          # a listing kept by node 3's agent
    write(n1, "gal/new.jpg", b"new")
    t0 = time.time()
    ok = eventually(lambda: "new.jpg" in out(n3, ["ls", "-1", d])[1].split(), 10, 0.05)
    expect(ok, "a file written on node 1 is listed on node 3", None)
    print("# listed on node 3 %.2f s after its write on node 1 returned" % (time.time() - t0))
    host(n1, ["rm", os.path.join(n1.dir, "gal/new.jpg")])
    del FILES["gal/new.jpg"]
    ok = eventually(lambda: "new.jpg" not in out(n3, ["ls", "-1", d])[1].split(), 10, 0.05)
    expect(ok, "... and unlisted once deleted there", None)


def test_local_directory_costs_no_round_trip(c):
    n3 = c.nodes[2]
    n3.mkdir("scratch/tmp")
    before = listings(n3)
    for _ in range(5):
        rc, so, se = out(n3, ["ls", os.path.join(n3.dir, "scratch/tmp")])
    expect(rc == 0 and listings(n3) == before,
           "a directory no node ever registered: the agent is not asked", before, listings(n3))
    out(n3, ["ls", os.path.join(n3.dir, "gal")])
    expect(listings(n3) > before, "... as it is for one the cluster has", None, listings(n3))


def listings(node):
    import urllib.request
    body = urllib.request.urlopen("%s/metrics" % node.url, timeout=10).read()
    m = re.search(rb"^cs_listings_total (\d+)", body, re.M)
    return int(m.group(1)) if m else -1


def test_agent_down_is_an_error(c):
    n3 = c.nodes[2]
    n3.stop_serve()
    try:
        rc, so, se = out(n3, ["ls", "-1", os.path.join(n3.dir, "gal")])
        expect(rc != 0 and "Input/output error" in se,
               "no agent: ls reports EIO, not a partial listing as whole", 2, (rc, se))
        expect("p00.jpg" not in so or "p00.jpg" in local_names(n3, "gal"),
               "... after the local entries only", None, so)
        rc, so, se = out(n3, ["python3", "-c", "import os,sys; os.listdir(sys.argv[1])",
                              os.path.join(n3.dir, "gal")])
        expect(rc != 0 and "Errno 5" in se, "Python's os.listdir raises EIO", 5, se[-200:])
    finally:
        n3.start_serve()
    rc, so, se = out(n3, ["ls", "-1", os.path.join(n3.dir, "gal")])
    expect(rc == 0 and sorted(so.split("\n")[:-1]) == want_gal(), "whole again with the agent",
           want_gal(), (rc, so, se))


def test_migration_fills_dirs(c):
    """A registry made before listings (schema and migrations up to 003)
    gets parent_hash and dirs from sql/migrations/004-listings.sql."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
    old = subprocess.run(["git", "-C", root, "show", "51200a1:sql/schema.sql"],
                         capture_output=True, text=True)
    if old.returncode != 0:
        expect(True, "migration: no git history here (a tarball): skipped")
        return
    c.sql("CREATE DATABASE old")
    c.sql(old.stdout, db="old")
    c.sql("INSERT INTO files (path_hash, namespace, path, version, size, mtime_ns, sha256,"
          " deleted) VALUES (UNHEX(SHA2('1',256)),'img','a/b/c.jpg',1,1,1,UNHEX(SHA2('1',256)),0),"
          " (UNHEX(SHA2('2',256)),'img','a/d.jpg',1,1,1,UNHEX(SHA2('2',256)),0),"
          " (UNHEX(SHA2('3',256)),'img','e.jpg',1,1,1,UNHEX(SHA2('3',256)),0)", db="old")
    with open(os.path.join(root, "sql/migrations/004-listings.sql")) as f:
        p = c.sql(f.read(), db="old", check=False)
    expect(p.returncode == 0, "004 applies to an older registry", 0, p.stderr)
    with open(os.path.join(root, "sql/migrations/004-listings.sql")) as f:
        p = c.sql(f.read(), db="old", check=False)
    expect(p.returncode == 0, "... and again (safe to repeat)", 0, p.stderr)
    dirs = c.sql("SELECT path FROM dirs ORDER BY path", db="old").stdout.split()
    expect(dirs == ["a", "a/b"], "dirs filled from the files", ["a", "a/b"], dirs)
    top = c.sql("SELECT path FROM files WHERE parent_hash=UNHEX(SHA2(CONCAT('img',0x00,''),256))",
                db="old").stdout.split()
    expect(top == ["e.jpg"], "parent_hash of a top-level file", ["e.jpg"], top)
    c.sql("DROP DATABASE old")


if __name__ == "__main__":
    # One copy of each file (its writer's): nodes 2 and 3 hold only what
    # they fetch, so what they list beyond that comes from the registry.
    run([test_setup, test_ls, test_each_name_once, test_find, test_python, test_php,
         test_apache_autoindex, test_git_fsck_on_another_node, test_delete_then_list_here,
         test_mv_then_stat_old_name,
         test_new_file_elsewhere_is_listed_soon, test_local_directory_costs_no_round_trip,
         test_agent_down_is_an_error, test_migration_fills_dirs],
        Cluster(nodes=3, nginx=False, extra_env={"CS_REPLICAS": "1"}))
