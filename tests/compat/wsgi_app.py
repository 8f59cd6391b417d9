"""wsgi_app.py - the compatibility matrix's Python application: a WSGI app
served by the standard library's wsgiref server, doing with files below
the node's namespace directory what app.php does (the same requests and
answers):
  GET  ?op=version                 the Python version and the server's
  GET  ?op=read&p=REL              open().read(): the bytes, 404 when absent
  POST ?op=write&p=REL             open(, "wb").write() of the request body
  POST ?op=rename&p=REL&to=REL2    os.rename
  POST ?op=delete&p=REL            os.unlink
  GET  ?op=list&p=REL              os.listdir: one name a line

  python3 wsgi_app.py PORT ROOT    serve on 127.0.0.1:PORT until killed
"""
import errno
import os
import platform
import sys
import urllib.parse
from wsgiref.simple_server import WSGIRequestHandler, make_server, software_version


def operate(root, env):
    q = urllib.parse.parse_qs(env.get("QUERY_STRING", ""))
    op = q.get("op", [""])[0]
    path = os.path.join(root, q.get("p", [""])[0])
    if op == "version":
        return "Python %s (%s)" % (platform.python_version(), software_version)
    if op == "read":
        with open(path, "rb") as f:
            return f.read()
    if op == "write":
        body = env["wsgi.input"].read(int(env.get("CONTENT_LENGTH") or 0))
        with open(path, "wb") as f:
            f.write(body)
        return b""
    if op == "rename":
        os.rename(path, os.path.join(root, q["to"][0]))
        return b""
    if op == "delete":
        os.unlink(path)
        return b""
    if op == "list":
        return "\n".join(sorted(os.listdir(path)))
    raise ValueError("unknown op %r" % op)


def app_for(root):
    def app(env, start_response):
        try:
            body = operate(root, env)
            status = "200 OK"
        except OSError as e:
            body = "%s: %s\n" % (e.filename, e.strerror)
            status = "404 Not Found" if e.errno == errno.ENOENT else "500 Internal Server Error"
        except (ValueError, KeyError) as e:
            body, status = "bad request: %s\n" % e, "400 Bad Request"
        if isinstance(body, str):
            body = body.encode()
        start_response(status, [("Content-Type", "application/octet-stream"),
                                ("Content-Length", str(len(body)))])
        return [body]
    return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main():
    port, root = int(sys.argv[1]), sys.argv[2]
    with make_server("127.0.0.1", port, app_for(root), handler_class=QuietHandler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
