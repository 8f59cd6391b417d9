"""cluster.py - a real ClusterStorage cluster on loopback, for the tests,
the demo and the benchmarks.

Starts, in a fresh temporary directory: memcached, MariaDB (own datadir,
schema from sql/schema.sql), and N nodes.  Node i has its namespace
directory and spool (owned by www-data), its agent `cs-replicate serve`
running as www-data with the whole configuration (registry, secret), and
an nginx whose master runs as root under LD_PRELOAD=libcs.so with only what
a host needs (CS_PREFIXES, CS_SPOOL, CS_LOG) and whose two workers drop to
www-data, as in production.  Each nginx listens twice: `port` serves files
with a plain `location` (nginx opens them with open64), `try_port` uses
`try_files $uri =404` (nginx decides with stat64 first).  On request
(Node.start_apache) a node also runs Apache httpd 2.4, event or prefork MPM,
optionally with mod_php, the same way: master as root under the library,
children as www-data.

Environment: B (build dir, default "build"), CS_TEST_PRELOAD (what to put
in LD_PRELOAD; default <top>/<B>/libcs.so), CS_TEST_BIN (the cs-replicate
to run; default <top>/<B>/cs-replicate), CS_TEST_SCHEMA (the schema to
load; default <top>/sql/schema.sql): demo/run --installed points these at
an installed copy.  Needs root.

By default everything is on 127.0.0.1.  Cluster(host=...) puts memcached and
MariaDB on another local address, and a subclass of Node (Cluster's
node_class) may give a node's agent an address of its own (Node.addr) and
start it elsewhere (Node.serve_preexec, and nginx likewise with
Node.nginx_preexec): tests/faults runs each agent in a network namespace of
its own that way, and tests/netcluster each agent and nginx.
"""
import hashlib
import hmac
import http.client
import os
import pwd
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(TOP, os.environ.get("B", "build"))
WEB_USER = "www-data"


def free_port():
    """A port nothing listens on now.  When tests/run runs suites side by
    side (CS_TEST_LANES), each lane takes ports of its own, so two
    suites cannot be handed the same one between its choice and its
    use."""
    lanes = int(os.environ.get("CS_TEST_LANES", "1") or 1)
    lane = int(os.environ.get("CS_TEST_PORT_LANE", "0") or 0)
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        # bind() to port 0 hands out odd ports first (even ones are left
        # for connect()): lanes split on the bit above.
        if lanes <= 1 or (port >> 1) % lanes == lane:
            return port


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def http_get(port, path, timeout=30, host="127.0.0.1"):
    """GET path (quoted here) from host:port: (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", urllib.parse.quote(path))
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def as_root():
    """Run the calling program as root: re-run it with sudo when it is not
    (the README's commands work for root and for a user who may sudo)."""
    if os.geteuid() == 0:
        return
    prog = os.path.abspath(sys.argv[0])
    if shutil.which("sudo"):
        os.execvp("sudo", ["sudo", sys.executable, prog] + sys.argv[1:])
    raise SystemExit("%s: needs root, and there is no sudo here: run it as root"
                     % os.path.relpath(prog))


def as_web_user(umask=None, nofile=None):
    """A preexec_fn: become the web user, with umask and at most nofile
    descriptors when given."""
    pw = pwd.getpwnam(WEB_USER)

    def demote():
        if umask is not None:
            os.umask(umask)
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return demote


NGINX_CONF = """
worker_processes {workers};
master_process on;
daemon off;
user {user};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    open_file_cache off;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen {addr}:{port};
        root {root};
        location / {{ {dav} }}
    }}
    server {{
        listen {addr}:{try_port};
        root {root};
        location / {{ try_files $uri =404; }}
    }}
}}
"""

NGINX_DAV = "dav_methods PUT DELETE MOVE; create_full_put_path on; dav_access user:rw all:r;"

# Apache httpd 2.4 (Debian's apache2 binary), self-contained: no file of
# /etc/apache2 is read and no APACHE_* variable is needed.  log_config and
# unixd are compiled in.
APACHE_CONF = """
ServerRoot {d}
ServerName 127.0.0.1
PidFile {d}/apache.pid
DefaultRuntimeDir {run}
Mutex file:{run} default
Listen 127.0.0.1:{port}
User {user}
Group {user}
LoadModule mpm_{mpm}_module /usr/lib/apache2/modules/mod_mpm_{mpm}.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule autoindex_module /usr/lib/apache2/modules/mod_autoindex.so
{mpm_conf}
ErrorLog {d}/apache-error.log
LogLevel warn
TypesConfig /etc/mime.types
EnableSendfile On
KeepAlive On
Timeout 60
DocumentRoot {root}
DirectoryIndex index.html index.php
<Directory />
    Options None
    AllowOverride None
    Require all denied
</Directory>
<Directory {root}>
    Options +Indexes
    AllowOverride None
    Require all granted
</Directory>
{php_conf}
"""

APACHE_MPM = {
    "event": """
StartServers 1
ServerLimit 2
ThreadsPerChild 8
ThreadLimit 8
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
""",
    "prefork": """
StartServers 2
MinSpareServers 1
MaxSpareServers 4
ServerLimit 8
MaxRequestWorkers 8
""",
}

APACHE_PHP = """
LoadModule php_module /usr/lib/apache2/modules/libphp8.2.so
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
"""


def apache_conf(d, run, port, root, mpm="event", php=False):
    """Apache's configuration: ServerRoot (pid file, error log) d, runtime
    directory run, serving root on 127.0.0.1:port with children as the web
    user; mpm "event" or "prefork", php loads mod_php."""
    return APACHE_CONF.format(d=d, run=run, port=port, user=WEB_USER, mpm=mpm,
                              mpm_conf=APACHE_MPM[mpm], root=root,
                              php_conf=APACHE_PHP if php else "")


def spawn_apache(conf, env, out):
    """apache2 -f conf in the foreground, its output to out.  In a session
    of its own: on shutdown Apache's master sends SIGTERM to its whole
    process group, which would otherwise be the caller's."""
    return subprocess.Popen(["apache2", "-f", conf, "-DFOREGROUND"], env=env, stdout=out,
                            stderr=out, start_new_session=True)


def stop_apache(p):
    """Stop an Apache from spawn_apache: SIGTERM, on which the master stops
    its children; after 10 s SIGKILL to its whole group."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def install_db(datadir):
    """mariadb-install-db into datadir.  Seen failing now and then on a
    loaded machine: said, and tried once more in a fresh datadir."""
    for attempt in (1, 2):
        p = subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + datadir,
                            "--auth-root-authentication-method=normal", "--user=root",
                            "--skip-test-db"], capture_output=True, text=True)
        if p.returncode == 0:
            return
        print("# mariadb-install-db failed (attempt %d): %s" % (attempt, (p.stdout + p.stderr)
                                                                .strip()[-800:]), flush=True)
        shutil.rmtree(datadir, ignore_errors=True)
    raise RuntimeError("mariadb-install-db failed twice")


def mariadb_template():
    """An initialised datadir for this server version, made once (by
    whichever cluster needs it first) and copied for each cluster."""
    version = subprocess.run(["mariadbd", "--version"], capture_output=True,
                             text=True).stdout.split()
    tag = hashlib.sha256(" ".join(version).encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), "cs-mariadb-template-%d-%s" % (os.getuid(), tag))
    if os.path.isdir(path):
        return path
    work = tempfile.mkdtemp(prefix="cs-mariadb-template.")
    install_db(os.path.join(work, "d"))
    try:
        os.rename(os.path.join(work, "d"), path)      # whole or not at all
    except OSError:
        if not os.path.isdir(path):                     # not another's win
            raise
    shutil.rmtree(work, ignore_errors=True)
    return path


class Node:
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = "node%d" % index
        self.home = os.path.join(cluster.tmp, self.name)
        self.dir = os.path.join(self.home, cluster.namespace)
        self.serve_port = free_port()
        self.port = free_port()
        self.try_port = free_port()
        self.addr = "127.0.0.1"       # where the agent listens and peers reach it
        self.url = "%s://%s:%d" % ("https" if cluster.tls_ca else "http", self.addr,
                                   self.serve_port)
        self.serve = None
        self.serve_wait = 5          # s an agent gets to stop
        self.nginx = None
        self.apache = None
        self.apache_port = None
        self.apache_mode = None       # (mpm, php) of the running Apache
        self.spool = os.path.join(self.home, "spool")
        os.makedirs(os.path.join(self.home, "tmp"))
        os.makedirs(self.dir)
        os.makedirs(self.spool)
        pw = pwd.getpwnam(WEB_USER)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chown(self.spool, pw.pw_uid, pw.pw_gid)

    def env(self, preload=False, **extra):
        """A host's environment with preload (what the library needs, and
        nothing secret), else the agent's and its commands' (everything)."""
        c = self.cluster
        e = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CS_PREFIXES": "%s=%s" % (c.namespace, self.dir),
            "CS_SPOOL": self.spool,
            "CS_LOG": c.log_level,
        }
        if not preload:
            e.update({
                "CS_NODE": self.name,
                "CS_NODE_URL": self.url,
                "CS_LISTEN": "%s:%d" % (self.addr, self.serve_port),
                "CS_MYSQL": c.mysql_url,
                "CS_MEMCACHED": "%s:%d" % (c.host, c.memcached_port),
                "CS_SECRET": c.secret,
            })
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ:
                e[k] = os.environ[k]
        if not preload and c.node_env:
            e.update(c.node_env(self))
        if preload:
            e["LD_PRELOAD"] = c.preload
            e.update(c.host_env)
        else:
            e.update(c.extra_env)
        e.update(extra)
        return e

    def start_serve(self, umask=None, nofile=None, wrapper=None, wait=10, **extra):
        """The agent, as the web user (with umask if given, and RLIMIT_NOFILE
        nofile if given, else the caller's), with this node's environment
        plus extra (CS_ZONE, CS_DB_CONNECTIONS ...).  wrapper is a command
        line the agent runs under (valgrind ...); such an agent gets wait
        seconds to answer and as long to stop."""
        log = open(os.path.join(self.home, "serve.log"), "ab")
        self.serve = subprocess.Popen(
            list(wrapper or []) + [self.cluster.bin, "serve"],
            env=self.env(**extra), stdout=log, stderr=log,
            preexec_fn=self.serve_preexec(umask, nofile))
        self.serve_wait = wait if wrapper else 5

        def up():
            if self.serve.poll() is not None:
                raise RuntimeError("%s serve exited %d (see %s/serve.log)"
                                   % (self.name, self.serve.returncode, self.home))
            return self.health() == 200
        wait_for(up, wait, self.name + " serve")

    def serve_preexec(self, umask=None, nofile=None):
        """What the agent's child process does before exec: become the
        web user (with umask and RLIMIT_NOFILE nofile when given)."""
        return as_web_user(umask, nofile)

    def stop_serve(self):
        """SIGTERM to the agent; SIGKILL if it has not stopped within 5 s
        (a wrapped one: the wait start_serve gave it).  Its exit status,
        or None if it was not running."""
        rc = None
        if self.serve and self.serve.poll() is None:
            self.serve.terminate()
            try:
                rc = self.serve.wait(self.serve_wait)
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait()
        self.serve = None
        return rc

    def connection(self, timeout):
        """An HTTP connection to this node's agent: TLS, verified against
        the cluster's CA, when the cluster runs it."""
        if self.cluster.tls_ca:
            ctx = ssl.create_default_context(cafile=self.cluster.tls_ca)
            return http.client.HTTPSConnection(self.addr, self.serve_port, timeout=timeout,
                                               context=ctx)
        return http.client.HTTPConnection(self.addr, self.serve_port, timeout=timeout)

    def health(self):
        conn = self.connection(2)
        try:
            conn.request("GET", "/v1/health")
            return conn.getresponse().status
        finally:
            conn.close()

    def start_nginx(self, preload=True, workers=2, dav=False):
        """nginx as described above; dav lets its plain `location` take PUT,
        DELETE and MOVE (ngx_http_dav_module: a worker writes the body to
        a temporary file outside the directory and renames it in)."""
        conf = os.path.join(self.home, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(user=WEB_USER, workers=workers, d=self.home, root=self.dir,
                                      addr=self.addr, port=self.port, try_port=self.try_port,
                                      dav=NGINX_DAV if dav else ""))
        log = open(os.path.join(self.home, "nginx.out"), "ab")
        self.nginx = subprocess.Popen(
            ["nginx", "-p", self.home, "-c", conf, "-e",
             os.path.join(self.home, "nginx-error.log")],
            env=self.env(preload=preload), stdout=log, stderr=log,
            preexec_fn=self.nginx_preexec())
        wait_for(lambda: socket.create_connection((self.addr, self.port), 1).close() or True,
                 10, self.name + " nginx")

    def nginx_preexec(self):
        """What nginx's master does before exec: nothing here (it stays
        root, its workers drop to the web user themselves); a subclass may
        move it elsewhere, like serve_preexec."""
        return None

    def stop_nginx(self):
        if self.nginx and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(5)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        self.nginx = None

    def start_apache(self, mpm="event", php=False, preload=True):
        """Apache httpd 2.4 serving this node's directory: the master runs
        as root under the library (this node's host environment, plus the
        LANG Debian's envvars sets), its children as the web user.  mpm is
        "event" or "prefork"; php loads mod_php (libphp8.2.so, needs
        prefork).  Listens on self.apache_port."""
        self.stop_apache()
        pw = pwd.getpwnam(WEB_USER)
        run = os.path.join(self.home, "apache-run")
        os.makedirs(run, exist_ok=True)
        os.chown(run, pw.pw_uid, pw.pw_gid)
        self.apache_port = free_port()
        conf = os.path.join(self.home, "apache.conf")
        with open(conf, "w") as f:
            f.write(apache_conf(self.home, run, self.apache_port, self.dir, mpm, php))
        log = open(os.path.join(self.home, "apache.out"), "ab")
        self.apache = spawn_apache(conf, self.env(preload=preload, LANG="C"), log)

        def up():
            if self.apache.poll() is not None:
                raise RuntimeError("%s apache2 exited %d (see %s/apache.out, apache-error.log)"
                                   % (self.name, self.apache.returncode, self.home))
            socket.create_connection(("127.0.0.1", self.apache_port), 1).close()
            return True
        wait_for(up, 10, self.name + " apache")
        self.apache_mode = (mpm, php)

    def stop_apache(self):
        if self.apache:
            stop_apache(self.apache)
        self.apache = None
        self.apache_mode = None

    def get_apache(self, path, timeout=30):
        return http_get(self.apache_port, path, timeout)

    def mkdir(self, rel):
        """Directory rel ("" for this node's directory itself) in this
        node's directory, made where missing and owned (with every directory
        between) by the web user."""
        pw = pwd.getpwnam(WEB_USER)
        path = os.path.join(self.dir, rel) if rel else self.dir
        os.makedirs(path, exist_ok=True)
        d = path
        while d != self.dir:
            os.chown(d, pw.pw_uid, pw.pw_gid)
            d = os.path.dirname(d)
        return path

    def put(self, rel, data):
        """Write a file straight into this node's directory (not through
        the library), owned by the web user."""
        path = os.path.join(self.dir, rel)
        pw = pwd.getpwnam(WEB_USER)
        self.mkdir(os.path.dirname(rel))
        with open(path, "wb") as f:
            f.write(data)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        return path

    def copy_in(self, stage, top):
        """Copy stage/top into this node's directory with `cp -r` under the
        library, as an upload tool would, the files given to the web user
        first; stage is removed.  cp's CompletedProcess."""
        pw = pwd.getpwnam(WEB_USER)
        for root, dirs, files in os.walk(stage):
            for x in dirs + files:
                os.chown(os.path.join(root, x), pw.pw_uid, pw.pw_gid)
        p = self.run(["cp", "-r", os.path.join(stage, top), self.dir])
        shutil.rmtree(stage)
        return p

    def cs(self, *args, check=True, preload=False, timeout=120):
        """Run cs-replicate <args> as the web user with this node's env."""
        p = subprocess.run([self.cluster.bin] + list(args),
                           env=self.env(preload=preload), capture_output=True,
                           text=True, preexec_fn=as_web_user(), timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("cs-replicate %s: exit %d\n%s%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def popen(self, argv, preload=True):
        """Start a program as the web user under the library, with pipes
        for its stdin and stdout."""
        return subprocess.Popen(argv, env=self.env(preload=preload), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, preexec_fn=as_web_user())

    def run(self, argv, preload=True, timeout=60, **kw):
        """Run a program as the web user under the library."""
        return subprocess.run(argv, env=self.env(preload=preload), capture_output=True,
                              preexec_fn=as_web_user(), timeout=timeout, **kw)

    def import_ns(self):
        return self.cs("import", self.cluster.namespace)

    def get(self, path, try_files=False, timeout=30):
        return http_get(self.try_port if try_files else self.port, path, timeout, self.addr)

    def signed(self, method, path, raw=None, when=None, secret=None, sig=None,
               headers=None, body=None, body_sha="-", length=None, target=None):
        """A peer request to this node's serve; path is the decoded path that
        is signed, raw (default: path quoted) what goes on the wire.  body_sha
        is what the signature covers as the body's hash; headers go out as
        given, and a body with its Content-Length unless headers have one.
        The signature covers that Content-Length (or length) and this node's
        URL (or target)."""
        when = int(time.time()) if when is None else when
        headers = dict(headers or {})
        if body is not None and not any(k.lower() == "content-length" for k in headers):
            headers["Content-Length"] = str(len(body))
        if length is None:
            sent = [v for k, v in headers.items() if k.lower() == "content-length"]
            length = int(sent[0]) if sent else 0
        if sig is None:
            sig = self.cluster.signature(method, path, when, body_sha, length,
                                         self.url if target is None else target, secret)
        conn = self.connection(10)
        try:
            conn.putrequest(method, raw if raw is not None else urllib.parse.quote(path),
                            skip_accept_encoding=True)
            if sig is not False:
                conn.putheader("X-CS-Time", str(when))
                conn.putheader("X-CS-Signature", sig)
            for k, v in headers.items():
                conn.putheader(k, v)
            try:
                conn.endheaders(body or None)       # one send() with the headers
            except (BrokenPipeError, ConnectionResetError):
                pass            # refused on its headers: the answer is there
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def stats(self):
        status, body = self.signed("GET", "/v1/stats")
        if status != 200:
            raise RuntimeError("stats: HTTP %d %r" % (status, body))
        return {k: int(v) for k, v in (l.split() for l in body.decode().splitlines())}

    def temp_files(self):
        """Files on their way in: hidden ones in the namespace directory
        (where there is no O_TMPFILE), and anonymous ones the agent holds
        open there ("fd N: DIR/#INODE (deleted)")."""
        found = []
        for root, dirs, files in os.walk(self.dir):
            found += [os.path.join(root, f) for f in files if f.startswith(".cs-")]
        if self.serve and self.serve.poll() is None:
            fds = "/proc/%d/fd" % self.serve.pid
            try:
                for fd in os.listdir(fds):
                    try:
                        target = os.readlink(os.path.join(fds, fd))
                    except OSError:
                        continue
                    if (target.startswith(self.dir + "/") and "/#" in target
                            and target.endswith("(deleted)")):
                        found.append("fd %s: %s" % (fd, target))
            except OSError:
                pass
        return found


class Cluster:
    node_class = Node

    def __init__(self, nodes=3, namespace="img", log_level="warn", nginx=True, extra_env=None,
                 host_env=None, tls_ca=None, node_env=None, host="127.0.0.1"):
        if os.geteuid() != 0:
            raise SystemExit("cluster.py: needs root (nginx workers, Apache children and the agent"
                             " run as www-data)")
        self.namespace = namespace
        self.log_level = log_level
        self.secret = hashlib.sha256(os.urandom(16)).hexdigest()
        self.preload = os.environ.get("CS_TEST_PRELOAD", os.path.join(BUILD, "libcs.so"))
        self.bin = os.environ.get("CS_TEST_BIN", os.path.join(BUILD, "cs-replicate"))
        self.schema = os.environ.get("CS_TEST_SCHEMA", os.path.join(TOP, "sql", "schema.sql"))
        self.tmp = tempfile.mkdtemp(prefix="cs-cluster.")
        os.chmod(self.tmp, 0o755)
        self.procs = {}
        self.nodes = []
        self.want_nginx = nginx
        self.n = nodes
        self.extra_env = extra_env or {}      # the agent's and cs-replicate's
        self.host_env = host_env or {}        # host processes' (CS_MISS_TIMEOUT ...)
        self.tls_ca = tls_ca                  # nodes speak https, verified against it
        self.node_env = node_env              # node -> its agent's own variables
        self.host = host                      # where memcached and MariaDB listen

    def signature(self, method, path, when, body_sha="-", length=0, target=None, secret=None):
        """The X-CS-Signature of a peer request (agent/sign.c): path decoded,
        body_sha "-" for no body, length its Content-Length, target the URL
        of the node it is sent to; signed with the cluster's secret or
        secret."""
        msg = "%s\n%s\n%d\n%s\n%d\n%s" % (method, path, when, body_sha, length, target)
        key = (self.secret if secret is None else secret).encode()
        return hmac.new(key, msg.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()

    # -- lifetime --------------------------------------------------------
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.memcached_port = free_port()
        self.mysql_port = free_port()
        self.mysql_socket = os.path.join(self.tmp, "mysql.sock")
        self.mysql_password = hashlib.sha256(os.urandom(8)).hexdigest()[:16]
        self.mysql_url = "mysql://cs:%s@%s:%d/cs" % (self.mysql_password, self.host,
                                                       self.mysql_port)
        self.start_memcached()
        self.init_mariadb()
        self.start_mariadb()
        self.setup_database()
        for i in range(1, self.n + 1):
            node = self.make_node(i)
            self.nodes.append(node)
            node.start_serve()
            if self.want_nginx:
                node.start_nginx()
        return self

    def make_node(self, index):
        """Node index (1-based), made but not started."""
        return self.node_class(self, index)

    def stop(self):
        for node in self.nodes:
            node.stop_nginx()
            node.stop_apache()
            node.stop_serve()
        for name in list(self.procs):
            self.stop_proc(name)
        if os.environ.get("CS_KEEP_TMP"):
            print("# kept", self.tmp, file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stop_proc(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- memcached -------------------------------------------------------
    def start_memcached(self):
        log = open(os.path.join(self.tmp, "memcached.log"), "ab")
        self.procs["memcached"] = subprocess.Popen(
            ["memcached", "-l", self.host, "-p", str(self.memcached_port), "-U", "0",
             "-u", "nobody", "-m", "64"], stdout=log, stderr=log)
        wait_for(lambda: socket.create_connection((self.host, self.memcached_port), 1).close() or True,
                 10, "memcached")

    def stop_memcached(self):
        self.stop_proc("memcached")

    def memcached(self, cmd):
        """Send memcached one command line (e.g. "flush_all"); its reply."""
        with socket.create_connection((self.host, self.memcached_port)) as m:
            m.sendall(cmd.encode() + b"\r\n")
            return m.recv(100)

    # -- MariaDB ---------------------------------------------------------
    def init_mariadb(self):
        """A fresh datadir: a copy of one made by mariadb-install-db once per
        machine and server version (2.3 s each time here, a copy 0.2 s)."""
        self.datadir = os.path.join(self.tmp, "mysql")
        template = mariadb_template()
        subprocess.run(["cp", "-a", template, self.datadir], check=True)

    def start_mariadb(self):
        log = open(os.path.join(self.tmp, "mariadb.log"), "ab")
        self.procs["mariadb"] = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--datadir=" + self.datadir,
             "--socket=" + self.mysql_socket, "--port=%d" % self.mysql_port,
             "--bind-address=" + self.host, "--skip-log-bin", "--user=root",
             "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=2",
             "--max-connections=500", "--skip-name-resolve"],
            stdout=log, stderr=log)
        wait_for(lambda: self.sql("SELECT 1", check=False).returncode == 0, 60, "MariaDB")

    def stop_mariadb(self):
        self.stop_proc("mariadb")

    def sql(self, statement, db=None, check=True):
        argv = ["mariadb", "--no-defaults", "-uroot", "--socket=" + self.mysql_socket,
                "-N", "-B", "-e", statement]
        if db:
            argv.append(db)
        p = subprocess.run(argv, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError("SQL failed: %s\n%s" % (statement, p.stderr))
        return p

    def setup_database(self):
        pw = self.mysql_password
        self.sql("DELETE FROM mysql.global_priv WHERE User=''; FLUSH PRIVILEGES;"
                 "CREATE DATABASE cs;"
                 "CREATE USER 'cs'@'%' IDENTIFIED BY '{0}';"
                 "CREATE USER 'cs'@'localhost' IDENTIFIED BY '{0}';"
                 "GRANT SELECT, INSERT, UPDATE, DELETE ON cs.* TO 'cs'@'%';"
                 "GRANT SELECT, INSERT, UPDATE, DELETE ON cs.* TO 'cs'@'localhost';".format(pw))
        with open(self.schema) as f:
            p = subprocess.run(["mariadb", "--no-defaults", "-uroot",
                                "--socket=" + self.mysql_socket, "cs"],
                               stdin=f, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("schema: " + p.stderr)
