"""A model zoo served over HTTP on 127.0.0.1, as a release URL serves it: the checkout's models/ folder, plus the
shipped registry at /registry.json.  Paths can be set to arrive truncated, as a short file or as a connection
that breaks off, to test that such downloads are refused."""

from __future__ import annotations

import contextlib
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from napari_cellsynth.core.zoo import SHIPPED_REGISTRY

MODELS = Path(__file__).resolve().parents[1] / "models"


class ZooHandler(SimpleHTTPRequestHandler):
    short: set[str] = set()  # served as a file of half the size (a correct, shorter Content-Length)
    broken: set[str] = set()  # announced whole, then the connection closes half-way

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.requests.append(self.path)
        if self.path == "/registry.json":
            body = SHIPPED_REGISTRY.read_bytes()
        elif self.path in self.short or self.path in self.broken:
            body = (MODELS / self.path.lstrip("/")).read_bytes()
        else:
            return super().do_GET()
        half = body[: len(body) // 2] if self.path in self.short | self.broken else body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) if self.path in self.broken else len(half)))
        self.end_headers()
        self.wfile.write(half)
        self.close_connection = True


@contextlib.contextmanager
def serve_zoo(short=(), broken=()):
    """Serve models/ on a free loopback port; yields (base URL, the handler class)."""
    handler = type("Handler", (ZooHandler,), {"short": set(short), "broken": set(broken), "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(MODELS)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (a port bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
