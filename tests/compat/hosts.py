"""hosts.py - the hosts of the compatibility matrix and how each one does
the scenario's steps (tests/compat/matrix.py runs them).

Every host works in a directory of its own in the namespace, named after
it, so hosts do not interfere:
  HOST/r/   a file written on node 1 before anything runs; the host reads
            it on node 2, which never had it (step read)
  HOST/w/   where the host writes, overwrites, renames and deletes on
            node 2 (steps write .. delete); the runner then reads the
            result on nodes 1 and 3 under the library (matrix.Run.converge)
  HOST/l/   files written on node 1 (one in a subdirectory) and on node 2
            before anything runs; the host lists it on node 3, which has
            fetched nothing of it (step list)

A step raises tap.Fail with the symptom a user would see when it fails.
Most hosts are a FileHost: five primitives (get, put, move, remove,
listdir) make the steps.  A step a host cannot do is in its `na`, with
the reason; it is not faked with another program.
"""
import html.parser
import io
import os
import subprocess
import tarfile
import urllib.parse
import zipfile

from tap import Fail, sha

STEPS = ("read", "write", "overwrite", "rename", "delete", "list")


def short(b):
    """Bytes as a symptom shows them: size and the start of the SHA-256."""
    return "%d bytes sha256 %s" % (len(b), sha(b)[:12])


def same(got, want, what):
    if got != want:
        raise Fail("%s: got %s, expected %s" % (what, short(got), short(want)))


def tail(b, n=300):
    s = b.decode(errors="replace") if isinstance(b, bytes) else b
    s = " ".join(s.split())
    return s[-n:]


class Host:
    name = ""        # the row, and the host's directory in the namespace
    title = ""       # the row's first column
    how = {}         # step -> what the host runs for it
    na = {}          # step -> why the step does not apply to this host
    ext = ".bin"

    def version(self, run):
        raise NotImplementedError

    def rel(self, sub):
        return "%s/%s" % (self.name, sub)

    def seeds(self, run):
        """Files written before any host runs: ({rel: bytes} on node 1,
        {rel: bytes} on node 2), rel below the host's directory."""
        self.seed = os.urandom(48 * 1024 + 7)
        return ({"r/seed" + self.ext: self.seed, "l/from-node1" + self.ext: os.urandom(3000),
                 "l/sub/from-node1" + self.ext: os.urandom(3000)},
                {"l/from-node2" + self.ext: os.urandom(4000)})

    def prepare(self, run):
        """What the host itself writes on node 1 before the run (a clone,
        a database), after the seeds."""

    def listed(self):
        """What a listing of l/ on node 3 must show."""
        return {"from-node1" + self.ext, "from-node2" + self.ext, "sub"}


class FileHost(Host):
    """A host that reads, writes, renames, deletes and lists files by name;
    the primitives take the node and a path relative to the namespace."""

    def get(self, run, node, rel):
        raise NotImplementedError

    def create(self, run, node, rel, data):
        """Write a new file; what the cluster must then hold (data, unless
        the host makes the bytes itself)."""
        return self.put(run, node, rel, data)

    def put(self, run, node, rel, data):
        raise NotImplementedError

    def move(self, run, node, a, b):
        raise NotImplementedError

    def remove(self, run, node, rel):
        raise NotImplementedError

    def listdir(self, run, node, rel):
        raise NotImplementedError

    # the steps
    def read(self, run):
        same(self.get(run, run.n2, self.rel("r/seed" + self.ext)), self.seed,
             "node 2 read r/seed%s" % self.ext)

    def write(self, run):
        self.cur, self.want = self.rel("w/new" + self.ext), None
        self.want = self.create(run, run.n2, self.cur, os.urandom(64 * 1024 + 11))
        run.converge(self.cur, self.want)

    def overwrite(self, run):
        self.want = self.put(run, run.n2, self.cur, os.urandom(80 * 1024 + 13))
        run.converge(self.cur, self.want)

    def rename(self, run):
        new = self.rel("w/renamed" + self.ext)
        self.move(run, run.n2, self.cur, new)
        old, self.cur = self.cur, new
        run.converge(new, self.want)
        run.converge(old, None)

    def delete(self, run):
        self.remove(run, run.n2, self.cur)
        run.converge(self.cur, None)

    caveat = {}         # step -> what a user of this host should know though it works

    def list(self, run):
        got = set(self.listdir(run, run.n3, self.rel("l")))
        want = self.listed()
        if got != want:
            raise Fail("node 3 lists %s; expected %s" % (
                ", ".join(sorted(got)) or "nothing", ", ".join(sorted(want))))
        return self.caveat.get("list")


# ---- web servers -------------------------------------------------------

class Links(html.parser.HTMLParser):
    """The href of every link of a directory index."""

    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href"]


def index_names(body):
    """Entries of an nginx or Apache directory index: its links but those
    to the parent and the sort links, without a directory's "/"."""
    p = Links()
    p.feed(body.decode(errors="replace"))
    return [urllib.parse.unquote(h).rstrip("/") for h in p.hrefs
            if h not in ("../",) and not h.startswith(("/", "?"))]


class HTTPHost(FileHost):
    def status(self, st, body, method, path, ok=(200, 201, 204)):
        if st not in ok:
            raise Fail("%s %s: HTTP %d %s" % (method, path, st, tail(body, 200)))
        return body


class StaticDav(HTTPHost):
    """A web server serving the namespace directory: GET, WebDAV PUT,
    MOVE and DELETE, and its directory index."""
    port_of = None     # Servers -> port

    def port(self, run, node):
        return self.port_of(run.servers[node.name])

    def req(self, run, node, method, rel, body=None, headers=None):
        path = "/" + urllib.parse.quote(rel)
        st, b = run.http(self.port(run, node), method, path, body, headers)
        return self.status(st, b, method, path)

    def get(self, run, node, rel):
        return self.req(run, node, "GET", rel)

    def put(self, run, node, rel, data):
        self.req(run, node, "PUT", rel, data)
        return data

    def move(self, run, node, a, b):
        dest = "http://127.0.0.1:%d/%s" % (self.port(run, node), urllib.parse.quote(b))
        self.req(run, node, "MOVE", a, headers={"Destination": dest})

    def remove(self, run, node, rel):
        self.req(run, node, "DELETE", rel)

    def listdir(self, run, node, rel):
        return index_names(self.req(run, node, "GET", rel + "/"))


def nginx_version(run):
    return run.version(["nginx", "-v"]).replace("nginx version: ", "")


def apache_version(run):
    return run.version(["apache2", "-v"]).split("\n")[0].replace("Server version: ", "")


class Nginx(StaticDav):
    name = "nginx"
    title = "nginx"
    how = {"read": "GET", "write": "WebDAV PUT (ngx_http_dav_module)",
           "overwrite": "WebDAV PUT", "rename": "WebDAV MOVE", "delete": "WebDAV DELETE",
           "list": "autoindex"}
    port_of = staticmethod(lambda s: s.static_port)

    def version(self, run):
        return nginx_version(run)


class ApacheEvent(StaticDav):
    name = "apache-event"
    title = "Apache httpd, mpm_event"
    how = {"read": "GET (static)", "write": "WebDAV PUT (mod_dav_fs)",
           "overwrite": "WebDAV PUT", "rename": "WebDAV MOVE", "delete": "WebDAV DELETE",
           "list": "mod_autoindex"}
    port_of = staticmethod(lambda s: s.event_port)

    def version(self, run):
        return apache_version(run)


class App(HTTPHost):
    """app.php or wsgi_app.py behind a server: the same requests."""
    port_of = None
    script = "/app.php"
    server = None      # run -> the version of the server in front, or None

    def call(self, run, node, method, op, body=None, **q):
        port = self.port_of(run.servers[node.name])
        path = "%s?%s" % (self.script, urllib.parse.urlencode(dict(op=op, **q)))
        st, b = run.http(port, method, path, body)
        return self.status(st, b, method, "%s(%s)" % (op, q.get("p", "")), ok=(200,))

    def get(self, run, node, rel):
        return self.call(run, node, "GET", "read", p=rel)

    def put(self, run, node, rel, data):
        self.call(run, node, "POST", "write", data, p=rel)
        return data

    def move(self, run, node, a, b):
        self.call(run, node, "POST", "rename", p=a, to=b)

    def remove(self, run, node, rel):
        self.call(run, node, "POST", "delete", p=rel)

    def listdir(self, run, node, rel):
        return [n for n in self.call(run, node, "GET", "list", p=rel).decode().split("\n") if n]

    def version(self, run):
        v = self.call(run, run.n2, "GET", "version").decode()
        if self.server:
            v += ", " + self.server(run)
        return v


PHP_HOW = {"read": "file_get_contents", "write": "file_put_contents",
           "overwrite": "file_put_contents", "rename": "rename", "delete": "unlink",
           "list": "scandir"}


class ApachePHP(App):
    name = "apache-prefork-php"
    title = "Apache httpd, mpm_prefork + mod_php"
    how = PHP_HOW
    port_of = staticmethod(lambda s: s.prefork_port)
    server = staticmethod(apache_version)


class PHPFPM(App):
    name = "php-fpm"
    title = "PHP-FPM behind nginx"
    how = PHP_HOW
    port_of = staticmethod(lambda s: s.php_port)
    server = staticmethod(nginx_version)


class PythonWSGI(App):
    name = "python"
    title = "Python, WSGI app (wsgiref)"
    how = {"read": "open().read()", "write": "open(, 'wb').write()",
           "overwrite": "open(, 'wb').write()", "rename": "os.rename", "delete": "os.unlink",
           "list": "os.listdir"}
    port_of = staticmethod(lambda s: s.wsgi_port)
    script = "/"


# ---- programs ----------------------------------------------------------

class Program(FileHost):
    """A command-line program run as the web user under the library."""

    def must(self, run, node, argv, **kw):
        p = run.run(node, argv, **kw)
        if p.returncode != 0:
            raise Fail("node %d: `%s` exits %d: %s" % (
                node.index, run.command(argv), p.returncode, tail(p.stderr) or tail(p.stdout)))
        return p

    def path(self, run, node, rel):
        return os.path.join(node.dir, rel)


class Coreutils(Program):
    name = "coreutils"
    title = "GNU coreutils"
    how = {"read": "cp out of the prefix", "write": "install, touch, ln (hard link)",
           "overwrite": "cp", "rename": "mv", "delete": "rm", "list": "ls"}

    def version(self, run):
        return run.version(["cp", "--version"]).split("\n")[0]

    def get(self, run, node, rel):
        out = run.scratch_file(node)
        self.must(run, node, ["cp", self.path(run, node, rel), out])
        with open(out, "rb") as f:
            return f.read()

    def create(self, run, node, rel, data):
        self.must(run, node, ["install", "-m", "0644", run.scratch_file(node, data),
                              self.path(run, node, rel)])
        return data

    def put(self, run, node, rel, data):
        self.must(run, node, ["cp", run.scratch_file(node, data), self.path(run, node, rel)])
        return data

    def write(self, run):
        super().write(run)
        # touch: a new empty file; ln: a new name for the file read in
        # step 1 (not the one overwritten next: a hard link's other name
        # changes only on the node that wrote through it)
        touched, linked = self.rel("w/touched" + self.ext), self.rel("w/linked" + self.ext)
        self.must(run, run.n2, ["touch", self.path(run, run.n2, touched)])
        self.must(run, run.n2, ["ln", self.path(run, run.n2, self.rel("r/seed" + self.ext)),
                                self.path(run, run.n2, linked)])
        run.converge(touched, b"")
        run.converge(linked, self.seed)

    def move(self, run, node, a, b):
        self.must(run, node, ["mv", self.path(run, node, a), self.path(run, node, b)])

    def remove(self, run, node, rel):
        self.must(run, node, ["rm", self.path(run, node, rel)])

    def listdir(self, run, node, rel):
        p = self.must(run, node, ["ls", "-A1", self.path(run, node, rel)])
        return p.stdout.decode().split()


def tar_of(members):
    """A tar archive of {name: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Tar(Program):
    name = "tar"
    title = "GNU tar"
    how = {"read": "create an archive of it", "write": "extract an archive into the prefix",
           "overwrite": "extract again", "delete": "create with --remove-files",
           "list": "create an archive of the directory"}
    na = {"rename": "tar renames no files"}

    def version(self, run):
        return run.version(["tar", "--version"]).split("\n")[0]

    def get(self, run, node, rel):
        out = run.scratch_file(node)
        self.must(run, node, ["tar", "-cf", out, "-C", self.path(run, node, os.path.dirname(rel)),
                              os.path.basename(rel)])
        with tarfile.open(out) as t:
            return t.extractfile(os.path.basename(rel)).read()

    def put(self, run, node, rel, data):
        src = run.scratch_file(node, tar_of({os.path.basename(rel): data}))
        self.must(run, node, ["tar", "-xf", src, "-C", self.path(run, node, os.path.dirname(rel))])
        return data

    def remove(self, run, node, rel):
        self.must(run, node, ["tar", "-cf", run.scratch_file(node), "--remove-files", "-C",
                              self.path(run, node, os.path.dirname(rel)), os.path.basename(rel)])

    caveat = {"list": "tar exits 1 saying \"file changed as we read it\" (the archive is whole)"
                      " the first time it archives a directory this node did not hold:"
                      " each file it reads is fetched into the directory meanwhile, which"
                      " changes the directory's ctime. A second run exits 0; so does one after"
                      " the files were read once (e.g. `find DIR -type f -exec cat {} + >"
                      " /dev/null`)"}

    def listdir(self, run, node, rel):
        out = run.scratch_file(node)
        p = run.run(node, ["tar", "-cf", out, "-C", self.path(run, node, rel), "."])
        complaints = [l for l in p.stderr.decode("utf-8", "replace").splitlines()
                      if "file changed as we read it" not in l]
        if p.returncode not in (0, 1) or complaints:
            self.must(run, node, ["tar", "-cf", out, "-C", self.path(run, node, rel), "."])
        with tarfile.open(out) as t:
            names = [m.name[2:] for m in t.getmembers() if m.name.startswith("./")]
        return {n.split("/")[0] for n in names if n}


class Rsync(Program):
    name = "rsync"
    title = "rsync"
    how = {"read": "rsync out of the prefix", "write": "rsync into the prefix",
           "overwrite": "rsync -I into the prefix", "delete": "rsync --delete",
           "list": "rsync -r of the directory out of the prefix"}
    na = {"rename": "rsync renames no files but its own temporary ones (those are in write)"}

    def version(self, run):
        return " ".join(run.version(["rsync", "--version"]).split("\n")[0].split()[:3])

    def get(self, run, node, rel):
        dst = run.scratch_dir(node)
        self.must(run, node, ["rsync", self.path(run, node, rel), dst + "/"])
        with open(os.path.join(dst, os.path.basename(rel)), "rb") as f:
            return f.read()

    def put(self, run, node, rel, data):
        src = run.scratch_dir(node)
        run.scratch_file(node, data, os.path.join(src, os.path.basename(rel)))
        self.must(run, node, ["rsync", "-I", os.path.join(src, os.path.basename(rel)),
                              self.path(run, node, os.path.dirname(rel)) + "/"])
        return data

    def remove(self, run, node, rel):
        self.must(run, node, ["rsync", "-r", "--delete", "--include=/" + os.path.basename(rel),
                              "--exclude=*", run.scratch_dir(node) + "/",
                              self.path(run, node, os.path.dirname(rel)) + "/"])

    def listdir(self, run, node, rel):
        dst = run.scratch_dir(node)
        self.must(run, node, ["rsync", "-r", self.path(run, node, rel) + "/", dst + "/"])
        return os.listdir(dst)


def zip_of(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


class Unzip(Program):
    name = "unzip"
    title = "UnZip"
    ext = ".zip"
    how = {"read": "unzip -p of an archive in the prefix",
           "write": "unzip -o an archive into the prefix", "overwrite": "unzip -o again",
           "list": "unzip -l 'DIR/*.zip' (unzip matches the wildcard itself, with readdir)"}
    na = {"rename": "unzip renames no files", "delete": "unzip deletes no files"}

    def version(self, run):
        return " ".join(run.version(["unzip", "-v"]).split("\n")[0].split()[:2])

    def seeds(self, run):
        """Each file an archive; r/seed.zip's member seed.bin holds the
        bytes step read expects."""
        n1, n2 = super().seeds(run)
        n1 = {rel: zip_of({"seed.bin": data}) for rel, data in n1.items()}
        n2 = {rel: zip_of({"seed.bin": data}) for rel, data in n2.items()}
        return n1, n2

    def listed(self):
        return {"from-node1.zip", "from-node2.zip"}

    def read(self, run):
        p = self.must(run, run.n2, ["unzip", "-p", self.path(run, run.n2, self.rel("r/seed.zip")),
                                    "seed.bin"])
        same(p.stdout, self.seed, "node 2 unzip -p r/seed.zip seed.bin")

    def put(self, run, node, rel, data):
        src = run.scratch_file(node, zip_of({os.path.basename(rel): data}))
        self.must(run, node, ["unzip", "-o", "-q", src, "-d",
                              self.path(run, node, os.path.dirname(rel))])
        return data

    def listdir(self, run, node, rel):
        p = self.must(run, node, ["unzip", "-l", self.path(run, node, rel) + "/*.zip"])
        return [os.path.basename(line.split(None, 1)[1]) for line in p.stdout.decode().splitlines()
                if line.startswith("Archive:")]


class Convert(Program):
    name = "imagemagick"
    title = "ImageMagick convert"
    ext = ".png"
    how = {"read": "convert IMAGE ppm:- (the pixels)",
           "write": "convert -resize into the prefix (a thumbnail)",
           "overwrite": "convert -resize again",
           "list": "convert 'DIR/*.png' info: (ImageMagick expands the wildcard itself)"}
    na = {"rename": "convert renames no files", "delete": "convert deletes no files"}

    def version(self, run):
        return " ".join(run.version(["convert", "-version"]).split("\n")[0].split()[1:3])

    def image(self, run, spec):
        """A PNG made by convert outside the prefix, without the library."""
        out = run.scratch_file(run.n1, suffix=".png")
        subprocess.run(["convert", "-size", "64x48", spec, out], check=True, env=run.plain_env())
        with open(out, "rb") as f:
            return f.read()

    def seeds(self, run):
        self.seed = self.image(run, "gradient:red-blue")
        p = subprocess.run(["convert", "png:-", "ppm:-"], input=self.seed, capture_output=True,
                           check=True, env=run.plain_env())
        self.pixels = p.stdout
        small = self.image(run, "plasma:fractal")
        return ({"r/seed.png": self.seed, "l/from-node1.png": small,
                 "l/sub/from-node1.png": small}, {"l/from-node2.png": small})

    def listed(self):
        return {"from-node1.png", "from-node2.png"}

    def read(self, run):
        p = self.must(run, run.n2, ["convert", self.path(run, run.n2, self.rel("r/seed.png")),
                                    "ppm:-"])
        same(p.stdout, self.pixels, "node 2 convert r/seed.png ppm:- (pixels)")

    def put(self, run, node, rel, data):
        # data is ignored: convert makes the bytes; the thumbnail's size
        # depends on how many bytes were asked for, so each put differs
        size = "%dx%d" % (16 + len(data) % 17, 12 + len(data) % 13)
        src = run.scratch_file(node, self.seed, suffix=".png")
        dst = self.path(run, node, rel)
        self.must(run, node, ["convert", src, "-resize", size + "!", dst])
        with open(dst, "rb") as f:
            return f.read()

    def listdir(self, run, node, rel):
        p = self.must(run, node, ["convert", self.path(run, node, rel) + "/*.png",
                                  "-format", "%f\n", "info:"])
        return p.stdout.decode().split()


class Git(Program):
    """git in repositories in the prefix: one cloned on node 1 (from a
    repository outside the prefix, through file://, as from a remote: its
    objects arrive in a pack) and read on node 2, cloned again for node 3
    to check; and one made on node 2 by init, add and commit."""
    name = "git"
    title = "git"
    how = {"read": "git log, git show, git fsck of a clone made on node 1",
           "write": "git init, add, commit (new repository)",
           "overwrite": "git commit -a (a changed file, the branch moved)",
           "rename": "git mv, commit", "delete": "git rm, commit",
           "list": "git fsck of a clone made on node 1"}

    GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "compat",
               "GIT_AUTHOR_EMAIL": "compat@example.org", "GIT_COMMITTER_NAME": "compat",
               "GIT_COMMITTER_EMAIL": "compat@example.org"}

    def version(self, run):
        return run.version(["git", "--version"]).replace("git version ", "git ")

    def git(self, run, node, repo, *args, **kw):
        return self.must(run, node, ["git", "-C", self.path(run, node, repo)] + list(args),
                         extra=self.GIT_ENV, **kw)

    def seeds(self, run):
        return {}, {}

    def prepare(self, run):
        src = run.scratch_dir(run.n1)
        self.readme = b"compat " + os.urandom(16).hex().encode() + b"\n"
        run.scratch_file(run.n1, self.readme, os.path.join(src, "README"))
        for args in (["init", "-q", "-b", "main"], ["add", "README"],
                     ["commit", "-q", "-m", "one"]):
            self.must(run, run.n1, ["git", "-C", src] + args, preload=False, extra=self.GIT_ENV)
        p = self.must(run, run.n1, ["git", "-C", src, "log", "--format=%H"], preload=False,
                      extra=self.GIT_ENV)
        self.log = p.stdout
        run.n1.mkdir(self.rel("r"))
        run.n1.mkdir(self.rel("l"))
        for sub in ("r", "l"):
            self.must(run, run.n1, ["git", "clone", "-q", "file://" + src,
                                    self.path(run, run.n1, self.rel(sub + "/repo"))],
                      extra=self.GIT_ENV)

    def read(self, run):
        repo = self.rel("r/repo")
        same(self.git(run, run.n2, repo, "log", "--format=%H").stdout, self.log,
             "node 2 git log of the clone")
        same(self.git(run, run.n2, repo, "show", "HEAD:README").stdout, self.readme,
             "node 2 git show HEAD:README")
        self.git(run, run.n2, repo, "fsck", "--no-progress")

    def sees(self, run, head, present, absent=()):
        """Nodes 1 and 3 see commit head in the repository node 2 made,
        with present ({name: bytes}) in its tree and work tree and absent
        in neither."""
        repo = self.rel("w/repo")
        for name, data in present.items():
            run.converge(repo + "/" + name, data)
        for name in absent:
            run.converge(repo + "/" + name, None)
        for node in (run.n1, run.n3):
            def at_head():
                p = run.run(node, ["git", "-C", self.path(run, node, repo), "log", "-1",
                                   "--format=%H"], extra=self.GIT_ENV)
                return p.returncode == 0 and p.stdout.strip() == head
            if not run.eventually(at_head):
                p = run.run(node, ["git", "-C", self.path(run, node, repo), "log", "-1",
                                   "--format=%H"], extra=self.GIT_ENV)
                raise Fail("node %d: git log -1 shows %r (exit %d: %s), expected %s" % (
                    node.index, p.stdout.strip(), p.returncode, tail(p.stderr), head))
            for name, data in present.items():
                same(self.git(run, node, repo, "show", "HEAD:" + name).stdout, data,
                     "node %d git show HEAD:%s" % (node.index, name))
            tree = self.git(run, node, repo, "ls-tree", "--name-only", "HEAD").stdout.split()
            gone = [n for n in absent if n.encode() in tree]
            if gone:
                raise Fail("node %d: HEAD's tree still has %s" % (node.index, gone))

    def commit(self, run, *args):
        repo = self.rel("w/repo")
        for a in args:
            self.git(run, run.n2, repo, *a)
        return self.git(run, run.n2, repo, "rev-parse", "HEAD").stdout.strip()

    def write(self, run):
        repo = self.rel("w/repo")
        self.must(run, run.n2, ["git", "init", "-q", "-b", "main", self.path(run, run.n2, repo)],
                  extra=self.GIT_ENV)
        self.data = os.urandom(5000)
        run.write(run.n2, repo + "/a.bin", self.data)
        head = self.commit(run, ["add", "a.bin"], ["commit", "-q", "-m", "add a"])
        self.sees(run, head, {"a.bin": self.data})

    def overwrite(self, run):
        self.data = os.urandom(6000)
        run.write(run.n2, self.rel("w/repo/a.bin"), self.data)
        head = self.commit(run, ["commit", "-q", "-a", "-m", "change a"])
        self.sees(run, head, {"a.bin": self.data})

    def rename(self, run):
        head = self.commit(run, ["mv", "a.bin", "b.bin"], ["commit", "-q", "-m", "a to b"])
        self.sees(run, head, {"b.bin": self.data}, ["a.bin"])

    def delete(self, run):
        head = self.commit(run, ["rm", "-q", "b.bin"], ["commit", "-q", "-m", "no b"])
        self.sees(run, head, {}, ["b.bin"])

    def list(self, run):
        self.git(run, run.n3, self.rel("l/repo"), "fsck", "--no-progress")
        same(self.git(run, run.n3, self.rel("l/repo"), "log", "--format=%H").stdout, self.log,
             "node 3 git log of the clone")


class SQLite(Program):
    """The sqlite3 shell, one writer at a time: a database is written on
    one node and read on others after the writer closed it."""
    name = "sqlite3"
    title = "SQLite (sqlite3 shell), one writer"
    how = {"read": "SELECT from a database made on node 1",
           "write": "CREATE TABLE, INSERT (new database)",
           "overwrite": "INSERT, UPDATE (rollback journal)",
           }
    na = {"rename": "sqlite3 renames no files", "delete": "sqlite3 deletes no databases"
          " (its rollback journals are deleted in write and overwrite)",
          "list": "sqlite3 lists no directories"}

    def version(self, run):
        return "SQLite " + run.version(["sqlite3", "--version"]).split()[0]

    def seeds(self, run):
        return {}, {}

    def prepare(self, run):
        self.rows = "".join("%d|row %d\n" % (i, i) for i in range(1, 4)).encode()
        run.n1.mkdir(self.rel("r"))
        self.must(run, run.n1, ["sqlite3", self.path(run, run.n1, self.rel("r/seed.db")),
                                "CREATE TABLE t(a INTEGER, b TEXT);"
                                "INSERT INTO t VALUES (1, 'row 1'), (2, 'row 2'), (3, 'row 3');"])

    def select(self, run, node, rel, readonly):
        argv = ["sqlite3"] + (["-readonly"] if readonly else []) + [
            self.path(run, node, rel), "SELECT a, b FROM t ORDER BY a;"]
        return self.must(run, node, argv).stdout

    def read(self, run):
        # opened read-write, as an application does
        same(self.select(run, run.n2, self.rel("r/seed.db"), False), self.rows,
             "node 2 SELECT from r/seed.db")

    def change(self, run, sql, rows):
        db = self.rel("w/new.db")
        self.must(run, run.n2, ["sqlite3", self.path(run, run.n2, db), sql])
        with open(self.path(run, run.n2, db), "rb") as f:
            run.converge(db, f.read())
        for node in (run.n1, run.n3):
            # read-only: a read-write open of a database not there yet
            # would create an empty one
            same(self.select(run, node, db, True), rows, "node %d SELECT" % node.index)

    def write(self, run):
        self.change(run, "CREATE TABLE t(a INTEGER, b TEXT);"
                    "INSERT INTO t VALUES (1, 'one'), (2, 'two');", b"1|one\n2|two\n")

    def overwrite(self, run):
        self.change(run, "INSERT INTO t VALUES (3, 'three'); UPDATE t SET b = 'uno' WHERE a = 1;",
                    b"1|uno\n2|two\n3|three\n")


HOSTS = [Nginx(), ApacheEvent(), ApachePHP(), PHPFPM(), PythonWSGI(), Coreutils(), Tar(),
         Rsync(), Unzip(), Convert(), Git(), SQLite()]
