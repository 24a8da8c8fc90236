"""A loopback server speaking the Hub's file-resolve protocol, for offline tests of hf_hub_download.

It answers HEAD and GET on ``/{repo_id}/resolve/{revision}/{filename}`` the way the Hub does for a
regular file: ``X-Repo-Commit``, a quoted ``ETag``, ``Content-Length``, ``Range`` requests (206),
and 404 with ``X-Error-Code`` for unknown repos, revisions and files. With ``lfs=True`` it answers
as the Hub does for LFS files: a 302 to a second origin (the "CDN", another port) carrying
``X-Linked-Etag`` and ``X-Linked-Size``, which huggingface_hub reads without following. Faults on demand:
``truncate`` (announce the full length, send half, close; every time or only ``once``) and ``stall``
(send half, then hold the connection open until the server stops: a process killed meanwhile
leaves its partial file). :func:`silent_endpoint` accepts connections and never answers;
:func:`closed_port` is a port nothing listens on."""
from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class Hub:
    def __init__(self, lfs: bool = False):
        self.lfs = lfs
        self._cdn = None
        self.files: dict[tuple[str, str], bytes] = {}
        self.faults: dict[str, str] = {}     # filename -> "truncate" | "truncate_once" | "stall"
        self.stalled = threading.Event()      # set when a stalled transfer has sent its first half
        self._stop = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.commit = COMMIT
        self._server = None
        self._thread = None

    def add(self, repo: str, filename: str, data: bytes) -> None:
        self.files[(repo, filename)] = data

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Hub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"   # one request per connection: a cut transfer is a closed socket

            def log_message(self, *args):
                pass

            def _lookup(self):
                if self.path.startswith("/cdn/"):
                    sha = self.path[5:]
                    for (_, fname), data in hub.files.items():
                        if hashlib.sha256(data).hexdigest() == sha:
                            return (fname, data), None
                    return None, ("EntryNotFound", 404)
                m = _PATH.match(self.path.split("?")[0])
                if not m:
                    return None, ("EntryNotFound", 404)
                repo, rev, fname = m.group("repo"), m.group("rev"), m.group("file")
                if not any(r == repo for r, _ in hub.files):
                    return None, ("RepoNotFound", 404)
                if rev not in ("main", hub.commit):
                    return None, ("RevisionNotFound", 404)
                data = hub.files.get((repo, fname))
                if data is None:
                    return None, ("EntryNotFound", 404)
                return (fname, data), None

            def _error(self, code, status):
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _headers(self, data, status=200, start=0):
                self.send_response(status)
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def _redirect(self, data):
                sha = hashlib.sha256(data).hexdigest()
                host, port = hub._cdn.server_address[:2]
                self.send_response(302)
                self.send_header("Location", f"http://{host}:{port}/cdn/{sha}")
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", '"git-oid-of-the-pointer"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path))
                found, err = self._lookup()
                if err:
                    return self._error(*err)
                if hub.lfs and not self.path.startswith("/cdn/"):
                    return self._redirect(found[1])
                self._headers(found[1])

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                found, err = self._lookup()
                if err:
                    return self._error(*err)
                fname, data = found
                if hub.lfs and not self.path.startswith("/cdn/"):
                    return self._redirect(data)
                start = 0
                rng = self.headers.get("Range")
                if rng and (m := re.match(r"bytes=(\d+)-$", rng)):
                    start = int(m.group(1))
                self._headers(data, 206 if start else 200, start)
                body = data[start:]
                fault = hub.faults.get(fname)
                if fault in ("truncate", "truncate_once"):
                    if fault == "truncate_once":
                        hub.faults.pop(fname)
                    body = body[: len(body) // 2]
                if fault == "stall":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    hub.stalled.set()
                    hub._stop.wait(30)
                    return
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        if self.lfs:
            self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self._cdn.daemon_threads = True
            threading.Thread(target=self._cdn.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
        if self._cdn is not None:
            self._cdn.shutdown()
            self._cdn.server_close()
            self._cdn = None


@contextlib.contextmanager
def silent_endpoint():
    """The URL of a socket that accepts connections (the kernel completes the handshake) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def closed_port() -> str:
    """The URL of a loopback port nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
