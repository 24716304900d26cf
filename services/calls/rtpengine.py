"""A client of rtpengine's NG control protocol, for asyncio: bencoded dictionaries over UDP.

Each request is `<cookie> <bencoded dict>` and its reply starts with the same cookie, so one socket
carries any number of requests at once. A request too large for a datagram goes over TCP instead (the
same framing, one connection each). rtpengine answers `{"result": "ok", ...}`, or
`{"result": "error", "error-reason": ...}`, which `command` raises as `NgError`.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, cast

Value = int | str | bytes | list[Any] | dict[str, Any]


class NgError(Exception):
    """rtpengine refused a command, did not answer in time, or answered something unreadable."""


def encode(value: Value | bool) -> bytes:
    """Bencode: integers, strings (UTF-8), lists, and dictionaries with their keys sorted."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(encode(item) for item in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(encode(key) + encode(value[key]) for key in sorted(value)) + b"e"
    raise TypeError(f"bencode cannot encode {type(value).__name__}")


def decode(data: bytes) -> Any:
    """The one bencoded value `data` holds; strings come back as str when they are UTF-8, else bytes."""
    value, end = _decode_at(data, 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after the bencoded value")
    return value


def _decode_at(data: bytes, at: int) -> tuple[Any, int]:
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if kind in (b"l", b"d"):
        at += 1
        items = []
        while data[at : at + 1] != b"e":
            if at >= len(data):
                raise ValueError("a list or dictionary is not closed")
            item, at = _decode_at(data, at)
            items.append(item)
        if kind == b"l":
            return items, at + 1
        return dict(zip(items[::2], items[1::2], strict=True)), at + 1
    colon = data.index(b":", at)
    length = int(data[at:colon])
    raw = data[colon + 1 : colon + 1 + length]
    if len(raw) != length:
        raise ValueError("a string is cut short")
    try:
        return raw.decode(), colon + 1 + length
    except UnicodeDecodeError:
        return raw, colon + 1 + length


def checked(command: str, reply: dict[str, Any]) -> dict[str, Any]:
    """The reply, unless it is rtpengine's refusal (NgError naming its reason)."""
    if reply.get("result") == "error":
        raise NgError(f"rtpengine refused {command!r}: {reply.get('error-reason', 'no reason given')}")
    return reply


class NgClient(asyncio.DatagramProtocol):
    """One UDP socket to one rtpengine; `await NgClient.connect(host, port)`, then `command(...)`."""

    def __init__(self, address: tuple[str, int], timeout: float):
        self.address = address
        self.timeout = timeout
        self._waiting: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 2.0) -> NgClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(lambda: cls((host, port), timeout), remote_addr=(host, port))
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cookie, _, body = data.partition(b" ")
        waiting = self._waiting.pop(cookie, None)
        if waiting is None or waiting.done():
            return  # a late reply to a request that timed out
        try:
            reply = decode(body)
            if not isinstance(reply, dict):
                raise ValueError("the reply is not a dictionary")
        except ValueError as unreadable:
            waiting.set_exception(NgError(f"rtpengine at {self._where()} answered unreadably: {unreadable}"))
            return
        waiting.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # An ICMP port unreachable: nobody listens there. Every request in flight fails now, not at its timeout.
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(NgError(f"rtpengine at {self._where()} is not reachable: {exc}"))
        self._waiting.clear()

    async def command(self, command: str, **arguments: Any) -> dict[str, Any]:
        """Sends `command` with `arguments` (call_id=... is sent as "call-id") and returns the reply."""
        if self._transport is None or self._transport.is_closing():
            raise NgError("the NG client is closed")
        cookie = secrets.token_hex(8).encode()
        request = {name.replace("_", "-"): value for name, value in arguments.items()}
        request["command"] = command
        waiting = asyncio.get_running_loop().create_future()
        self._waiting[cookie] = waiting
        self._transport.sendto(cookie + b" " + encode(request))
        try:
            reply = await asyncio.wait_for(waiting, self.timeout)
        except TimeoutError:
            raise NgError(f"rtpengine at {self._where()} did not answer {command!r} within {self.timeout:g}s") from None
        finally:
            self._waiting.pop(cookie, None)
        return checked(command, reply)

    async def command_over_tcp(self, command: str, **arguments: Any) -> dict[str, Any]:
        """`command` sent over TCP, to rtpengine's `--listen-tcp-ng` at the same address: for a request too
        large for one datagram (a `play media` blob beyond 64 KB). One connection per command."""
        request = encode({**{name.replace("_", "-"): value for name, value in arguments.items()}, "command": command})
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(*self.address)
                try:
                    writer.write(secrets.token_hex(8).encode() + b" " + request)  # rtpengine drops a cookie seen before
                    await writer.drain()
                    answer = b""
                    while True:
                        chunk = await reader.read(65536)
                        if not chunk:
                            raise NgError(f"rtpengine at {self._where()} closed the connection before answering")
                        answer += chunk
                        try:
                            reply = decode(answer.partition(b" ")[2])
                            break
                        except (ValueError, IndexError):
                            continue  # not all of it yet
                finally:
                    writer.close()
        except TimeoutError:
            raise NgError(f"rtpengine at {self._where()} did not answer {command!r} within {self.timeout:g}s") from None
        except OSError as error:
            raise NgError(f"rtpengine at {self._where()} is not reachable over TCP (--listen-tcp-ng): {error}") from None
        if not isinstance(reply, dict):
            raise NgError(f"rtpengine at {self._where()} answered unreadably: the reply is not a dictionary")
        return checked(command, reply)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"
