"""A real HTTP receiver of webhooks on 127.0.0.1, for the tests and the bench: it records every POST
and answers from a script (then 200)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# An answer: a status, or a status and headers to send with it.
Answer = int | tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    time: float  # time.monotonic() when it arrived

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(
        self, answers: Iterable[Answer] = (), *, by_path: dict[str, list[Answer]] | None = None, port: int = 0
    ):
        self.requests: list[Received] = []
        self._answers = list(answers)
        self._by_path = {path: list(script) for path, script in (by_path or {}).items()}
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, headers = receiver._record(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _record(self, received: Received) -> tuple[int, dict[str, str]]:
        with self._lock:
            self.requests.append(received)
            self._lock.notify_all()
            script = self._by_path.get(received.path, self._answers)
            answer = script.pop(0) if script else 200
        return (answer, {}) if isinstance(answer, int) else answer

    def script(self, path: str, answers: list[Answer]) -> None:
        """From now on, answers the requests to `path` from `answers` (then 200)."""
        with self._lock:
            self._by_path[path] = list(answers)

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        """The first `count` requests, once they have come (AssertionError if not in `timeout` s)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} of {count} webhook requests came in {timeout} s")
            return list(self.requests[:count])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
