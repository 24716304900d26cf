"""A real HTTP server on 127.0.0.1 for webhook tests: it records every POST and answers each as the test
says, in a thread of its own."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

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


@dataclass(frozen=True)
class Answer:
    body: bytes | str = b""
    content_type: str = "application/json"
    status: int = 200
    delay: float = 0.0  # seconds before answering


class Receiver:
    """Answers each POST with `answer(received)`; `received` lists them, `answered` those it finished."""

    def __init__(self, answer: Callable[[Received], Answer]):
        self.received: list[Received] = []
        self.answered: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length", "0"))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                receiver.received.append(got)
                reply = answer(got)
                time.sleep(reply.delay)
                body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", reply.content_type)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the caller gave up waiting
                    pass
                receiver.answered.append(got)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def replying(*answers: Answer) -> Callable[[Received], Answer]:
    """Answers the n-th POST with the n-th answer, and every later one with an empty 200."""
    given = iter(answers)
    return lambda _: next(given, Answer())
