"""A rest-hook receiver on a loopback port, as an agency's system would run one (a real HTTP server)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every notification; answers ``status`` (settable, e.g. 500 to make deliveries fail)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    status = receiver.status
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": json.loads(body) if body else None,
                            "at": time.time(),
                            "answered": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def notifications(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [r["body"] for r in self.received if r["body"]]
        return [b for b in bodies if kind is None or status_of(b)["type"] == kind]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """The first entry's Parameters as {name: value} (events as a list of {part name: value})."""
    params = bundle["entry"][0]["resource"]["parameter"]
    out: dict[str, Any] = {"events": []}
    for p in params:
        if p["name"] == "notification-event":
            out["events"].append(
                {
                    part["name"]: next(v for k, v in part.items() if k.startswith("value"))
                    for part in p["part"]
                }
            )
        else:
            out[p["name"]] = _value(p)
    return out


def _value(parameter: dict[str, Any]) -> Any:
    return next(v for k, v in parameter.items() if k.startswith("value"))
