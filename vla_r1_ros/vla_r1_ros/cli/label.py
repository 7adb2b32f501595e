"""`vla-r1 label LOGDIR`: a local web page to review and label logged episodes.

The page (`vla_r1_ros/label_page/`, plain HTML + JS, no build step) draws the frame the model saw with
its predicted box and path; the operator drags a reference box, clicks a reference path, sets the
outcome and saves. Saving writes the episode's labels.json atomically (`core.labels.save_labels`) and
the answer comes back re-scored against the new references.

HTTP API (JSON; the page is its only client):
    GET  /api/episodes                    episode list (`labels.episode_summaries`)
    GET  /api/episodes/<episode>          one episode (`labels.episode_view`)
    GET  /api/episodes/<episode>/color.png
    PUT  /api/episodes/<episode>/labels   merge labels (null removes a key); returns the episode

The server binds to 127.0.0.1 unless `--host` says otherwise. Because any web page the operator opens
could send requests to localhost, a write must be `Content-Type: application/json` (a cross-site page
cannot send that without a CORS preflight, which this server never grants) from no or the same
Origin, and Host must name this server (DNS rebinding). Every answer carries a Content-Security-Policy
that allows only this server's own script, so logged text can never run as code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 8765
MAX_BODY_BYTES = 1 << 20
ASSETS = {"/": "index.html", "/index.html": "index.html", "/label.js": "label.js", "/label.css": "label.css"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", type=Path, help="episode log directory (holds index.jsonl)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--labeller", default=None, help="name stored with every label (default: the login name)")
    parser.epilog = "then open the printed address in a browser; keys: see the page's help line"


class LabelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, logdir: Path, address: tuple[str, int], labeller: str, any_host: bool):
        super().__init__(address, LabelHandler)
        self.logdir = logdir
        self.labeller = labeller
        self.any_host = any_host  # bound to a chosen interface: other machines may use other names for it

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class LabelHandler(BaseHTTPRequestHandler):
    server: LabelServer
    server_version = "vla-r1-label"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: only errors are worth a line on the terminal."""

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        if status >= 500:
            print(f"vla-r1 label: {self.command} {self.path}: {message}", file=sys.stderr)
        self._json(status, {"error": message})

    def _host_ok(self) -> bool:
        if self.server.any_host:
            return True
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    def _route(self) -> tuple[str, list[str]]:
        path = urlsplit(self.path).path
        parts = [unquote(part) for part in path.split("/") if part]
        return path, parts

    def do_GET(self) -> None:
        from vla_r1_ros.core import episodes, labels

        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
        path, parts = self._route()
        try:
            if path in ASSETS:
                name = ASSETS[path]
                body = resources.files("vla_r1_ros.label_page").joinpath(name).read_bytes()
                return self._send(HTTPStatus.OK, body, CONTENT_TYPES[Path(name).suffix])
            if parts == ["api", "episodes"]:
                return self._json(
                    HTTPStatus.OK,
                    {"logdir": str(self.server.logdir), "episodes": labels.episode_summaries(self.server.logdir)},
                )
            if len(parts) == 3 and parts[:2] == ["api", "episodes"]:
                return self._json(HTTPStatus.OK, labels.episode_view(self.server.logdir, parts[2]))
            if len(parts) == 4 and parts[:2] == ["api", "episodes"] and parts[3] == episodes.COLOR_FILE:
                folder = labels.episode_folder(self.server.logdir, parts[2])
                try:
                    body = (folder / episodes.COLOR_FILE).read_bytes()
                except FileNotFoundError:
                    return self._error(HTTPStatus.NOT_FOUND, f"episode {parts[2]} has no colour frame")
                return self._send(HTTPStatus.OK, body, "image/png")
        except labels.LabelError as exc:
            return self._error(HTTPStatus.NOT_FOUND, str(exc))
        except episodes.EpisodeStoreError as exc:
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
        return self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        from vla_r1_ros.core import episodes, labels

        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host', '')}":
            return self._error(HTTPStatus.FORBIDDEN, f"writes from another origin ({origin}) are refused")
        if self.headers.get_content_type() != "application/json":
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send labels as application/json")
        _path, parts = self._route()
        if not (len(parts) == 4 and parts[:2] == ["api", "episodes"] and parts[3] == "labels"):
            return self._error(HTTPStatus.NOT_FOUND, "PUT only /api/episodes/<episode>/labels")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return self._error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if not 0 < length <= MAX_BODY_BYTES:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"labels must be 1 byte to {MAX_BODY_BYTES} bytes")
        try:
            updates = json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"not JSON: {exc}")
        try:
            labels.episode_folder(self.server.logdir, parts[2])
        except labels.LabelError as exc:
            return self._error(HTTPStatus.NOT_FOUND, str(exc))
        try:
            labels.save_labels(self.server.logdir, parts[2], updates, labeller=self.server.labeller)
            return self._json(HTTPStatus.OK, labels.episode_view(self.server.logdir, parts[2]))
        except labels.LabelError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except episodes.EpisodeStoreError as exc:
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))


def run(args: argparse.Namespace) -> int:
    from vla_r1_ros.core.episodes import INDEX_FILE

    logdir = args.logdir.resolve()
    if not (logdir / INDEX_FILE).is_file():
        print(f"vla-r1 label: {args.logdir} is not an episode log (no {INDEX_FILE})", file=sys.stderr)
        return 2
    try:
        server = LabelServer(
            logdir, (args.host, args.port), args.labeller or getpass.getuser(), any_host=args.host != "127.0.0.1"
        )
    except OSError as exc:
        print(f"vla-r1 label: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"labelling {logdir} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
