"""servers.py - the long-running hosts of the compatibility matrix on one
node, each started once under the library (LD_PRELOAD, CS_PREFIXES and
CS_SPOOL only, as in production) and kept for the whole run:

* nginx: one master as root, its worker as the web user.  Port `static`
  serves the namespace directory with ngx_http_dav_module (PUT, DELETE,
  MOVE) and autoindex; port `php` passes app.php to PHP-FPM (FastCGI).
* PHP-FPM: master as root, a static pool of two workers as the web user.
* Apache httpd 2.4 with the event MPM serving the namespace directory
  (static files, mod_dav + mod_dav_fs, mod_autoindex); another with the
  prefork MPM and mod_php running app.php.  Both configured by
  tests/integration/cluster.py's apache_conf, plus DAV for the first.
* wsgi_app.py under the standard library's wsgiref server, as the web user.

app.php and wsgi_app.py are installed in the node's application directory
(outside the namespace directory: the code is the site's, the files the
cluster's), app.php with the node's namespace directory written in.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from cluster import (WEB_USER, apache_conf, as_web_user, free_port, spawn_apache,  # noqa: E402
                     stop_apache, wait_for)

# Debian's programs, as tests/deps installs them, whatever else the
# caller's PATH holds: the table reports their versions.
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

NGINX_CONF = """
worker_processes 1;
master_process on;
daemon off;
user {user};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    open_file_cache off;
    sendfile on;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{static};
        root {root};
        location / {{
            dav_methods PUT DELETE MOVE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            autoindex on;
        }}
    }}
    server {{
        listen 127.0.0.1:{php};
        root {app};
        location = /app.php {{
            fastcgi_pass unix:{d}/php-fpm.sock;
            fastcgi_param SCRIPT_FILENAME {app}/app.php;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
        }}
    }}
}}
"""

PHP_FPM_CONF = """
[global]
pid = {d}/php-fpm.pid
error_log = {d}/php-fpm.log
daemonize = no

[compat]
user = {user}
group = {user}
listen = {d}/php-fpm.sock
listen.owner = {user}
listen.group = {user}
pm = static
pm.max_children = 2
catch_workers_output = yes
"""

APACHE_DAV = """
LoadModule dav_module /usr/lib/apache2/modules/mod_dav.so
LoadModule dav_fs_module /usr/lib/apache2/modules/mod_dav_fs.so
DavLockDB {d}/dav/lock
<Directory {root}>
    Dav On
</Directory>
"""


def listening(port):
    socket.create_connection(("127.0.0.1", port), 1).close()
    return True


class Servers:
    """The servers of one node (a cluster.Node), started by start()."""

    def __init__(self, node):
        self.node = node
        self.d = os.path.join(node.home, "compat")
        self.app = os.path.join(self.d, "app")
        self.procs = {}            # name -> Popen
        self.static_port = free_port()
        self.php_port = free_port()
        self.event_port = free_port()
        self.prefork_port = free_port()
        self.wsgi_port = free_port()

    def env(self, **extra):
        return self.node.env(preload=True, PATH=HOST_PATH, LANG="C", **extra)

    def log(self, name):
        return open(os.path.join(self.d, name + ".out"), "ab")

    def start(self):
        pw = pwd.getpwnam(WEB_USER)
        for sub in ("tmp", "app", "dav", "run-event", "run-prefork"):
            os.makedirs(os.path.join(self.d, sub), exist_ok=True)
        for sub in ("dav", "run-event", "run-prefork"):
            os.chown(os.path.join(self.d, sub), pw.pw_uid, pw.pw_gid)
        with open(os.path.join(HERE, "app.php")) as f:
            php = f.read().replace("@ROOT@", self.node.dir)
        with open(os.path.join(self.app, "app.php"), "w") as f:
            f.write(php)
        shutil.copy(os.path.join(HERE, "wsgi_app.py"), self.app)
        for f in os.listdir(self.app):
            os.chmod(os.path.join(self.app, f), 0o644)
        self.start_php_fpm()
        self.start_nginx()
        self.start_apaches()
        self.start_wsgi()
        self.wait_up()

    def start_php_fpm(self):
        conf = os.path.join(self.d, "php-fpm.conf")
        with open(conf, "w") as f:
            f.write(PHP_FPM_CONF.format(d=self.d, user=WEB_USER))
        self.procs["php-fpm"] = subprocess.Popen(
            ["php-fpm8.2", "--nodaemonize", "--fpm-config", conf], env=self.env(),
            stdout=self.log("php-fpm"), stderr=subprocess.STDOUT)

    def start_nginx(self):
        conf = os.path.join(self.d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(user=WEB_USER, d=self.d, root=self.node.dir, app=self.app,
                                      static=self.static_port, php=self.php_port))
        self.procs["nginx"] = subprocess.Popen(
            ["nginx", "-p", self.d, "-c", conf, "-e", os.path.join(self.d, "nginx-error.log")],
            env=self.env(), stdout=self.log("nginx"), stderr=subprocess.STDOUT)

    def start_apaches(self):
        """Two Apaches side by side, each with a server root of its own
        (pid file, error log) and runtime directory."""
        for mpm, port, root, php in (("event", self.event_port, self.node.dir, False),
                                     ("prefork", self.prefork_port, self.app, True)):
            d = os.path.join(self.d, "apache-" + mpm)
            os.makedirs(d, exist_ok=True)
            conf = apache_conf(d, os.path.join(self.d, "run-" + mpm), port, root, mpm, php)
            if mpm == "event":
                conf += APACHE_DAV.format(d=self.d, root=root)
            path = os.path.join(d, "apache.conf")
            with open(path, "w") as f:
                f.write(conf)
            self.procs["apache-" + mpm] = spawn_apache(path, self.env(), self.log("apache-" + mpm))

    def start_wsgi(self):
        self.procs["wsgi"] = subprocess.Popen(
            ["python3", os.path.join(self.app, "wsgi_app.py"), str(self.wsgi_port),
             self.node.dir], env=self.env(), stdout=self.log("wsgi"), stderr=subprocess.STDOUT,
            preexec_fn=as_web_user())

    def wait_up(self):
        ports = {"nginx": self.static_port, "apache-event": self.event_port,
                 "apache-prefork": self.prefork_port, "wsgi": self.wsgi_port}
        for name, p in self.procs.items():
            def up():
                if p.poll() is not None:
                    raise RuntimeError("%s %s exited %d (see %s/%s.out)" % (
                        self.node.name, name, p.returncode, self.d, name))
                if name == "php-fpm":
                    return os.path.exists(os.path.join(self.d, "php-fpm.sock"))
                return listening(ports[name])
            wait_for(up, 15, "%s %s" % (self.node.name, name))

    def stop(self):
        for name, p in self.procs.items():
            if name.startswith("apache"):
                stop_apache(p)
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if name in ("nginx", "php-fpm") else signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = {}

    def logs(self):
        """(name, path) of each log these servers write."""
        for name in ("nginx-error.log", "php-fpm.log", "apache-event/apache-error.log",
                     "apache-prefork/apache-error.log", "wsgi.out", "nginx.out"):
            path = os.path.join(self.d, name)
            if os.path.exists(path):
                yield name, path
