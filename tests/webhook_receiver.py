"""A real HTTP receiver of webhooks on 127.0.0.1, for the tests and the bench: it records every POST (and
GET: a file to fetch) and answers from a script (then 200)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Reply:
    """An answer with a body (a steering reply), optionally after `delay` seconds."""

    body: bytes | str = b""
    content_type: str = "application/json"
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


# An answer: a status, a status and headers to send with it, or a Reply.
Answer = int | tuple[int, dict[str, str]] | Reply


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    time: float  # time.monotonic() when it arrived

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        """A STANDARD body as JSON; a SIPGATE (form) body as its fields, one value each."""
        if self.headers.get("content-type", "").startswith("application/json"):
            document: dict[str, Any] = json.loads(self.body)
            return document
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def type(self) -> str:
        """`call.new_call`, `call.data`…, or sipgate's `newCall`, `dtmf`…"""
        return str(self.event.get("type") or self.event.get("event"))


def _reply(answer: Answer) -> Reply:
    if isinstance(answer, Reply):
        return answer
    status, headers = (answer, {}) if isinstance(answer, int) else answer
    return Reply(status=status, headers=headers, content_type="")


class Receiver:
    """Answers each POST from its path's script (`by_path`), else with the answer for its event's type
    (`by_type`, the same every time: a steering POST and the delivery of the same event both get it),
    else from `answers` in turn, else 200."""

    def __init__(
        self, answers: Iterable[Answer] = (), *, by_path: dict[str, list[Answer]] | None = None,
        by_type: dict[str, Answer] | None = None, port: int = 0, host: str = "127.0.0.1",
    ):
        self.requests: list[Received] = []
        self.answered: list[Received] = []  # those whose answer was sent (or given up by the sender)
        self._answers = list(answers)
        self._by_path = {path: list(script) for path, script in (by_path or {}).items()}
        self._by_type = dict(by_type or {})
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                reply = receiver._record(received)
                time.sleep(reply.delay)
                content = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    if reply.content_type:
                        self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:  # the sender stopped waiting
                    pass
                with receiver._lock:
                    receiver.answered.append(received)
                    receiver._lock.notify_all()

            do_GET = do_POST  # noqa: N815 - a file to fetch (an announcement), scripted the same way

            def log_message(self, *args: object) -> None:
                pass

        self.host = host
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _record(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            self._lock.notify_all()
            if received.path not in self._by_path and self._by_type and received.type in self._by_type:
                return _reply(self._by_type[received.type])
            script = self._by_path.get(received.path, self._answers)
            return _reply(script.pop(0) if script else 200)

    def of_type(self, event_type: str) -> list[Received]:
        """The requests that carried an event of `event_type` (`call.new_call`, sipgate's `newCall`…)."""
        with self._lock:
            return [r for r in self.requests if r.type == event_type]

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

    def wait_answered(self, count: int, timeout: float = 20) -> None:
        """Returns once `count` requests were answered."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.answered) >= count, timeout):
                raise AssertionError(f"{len(self.answered)} of {count} webhook requests answered in {timeout} s")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
