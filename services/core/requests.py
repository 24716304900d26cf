"""What every request goes through before its servicer sees it: its size, its decoding, its strings.

`guard` wraps each method handler's request deserializer (services/core/server.py registers every
servicer through it), so that, the same on every backend and before any database sees a value:
- a request larger than its RPC needs is INVALID_ARGUMENT (REQUEST_LIMIT; BATCH_REQUEST_LIMIT for an
  RPC whose request holds repeated messages, a batch);
- bytes that are no message of the RPC's request type are INVALID_ARGUMENT (grpcio's default is
  UNKNOWN);
- a string holding NUL or another control character (tab, line feed and carriage return aside), or
  longer than MAX_TEXT, is INVALID_ARGUMENT naming its field (PostgreSQL refuses NUL in text, SQLite
  stores it).
A refused request reaches its handler as a `Refused`, which answers the error's status.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from .errors import FieldViolation, InvalidArgument
from .rpc import abort, status_of

REQUEST_LIMIT = 64 * 1024  # bytes of one request; the largest legitimate one is a few KB
# One message of an upload stream (a request with a `bytes` field: SendFax's chunks of at most 1 MiB),
# with room for the fields beside its chunk.
CHUNK_REQUEST_LIMIT = 1024 * 1024 + REQUEST_LIMIT
BATCH_REQUEST_LIMIT = 4 * 1024 * 1024  # 10,000 inventory entries or 1,000 full creates take about 1.5 MB
MAX_TEXT = 4096  # characters of any one string; each field's own limit (its column's) is lower
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Refused:
    """A request refused before its servicer saw it, and why."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidArgument):
        self.error = error


def string_problems(message: Message) -> list[FieldViolation]:
    """Every string of `message`, nested ones included, that holds a control character or is too long."""
    found: list[FieldViolation] = []
    _scan(message, "", found)
    return found


def _check(value: str, path: str, found: list[FieldViolation]) -> None:
    if len(value) > MAX_TEXT:
        found.append(FieldViolation(path, f"must be at most {MAX_TEXT} characters, got {len(value):,}"))
    elif not value.isprintable():  # the usual string is: one C call, and no search
        bad = _CONTROL.search(value)
        if bad:
            found.append(FieldViolation(path, f"must not contain control characters (U+{ord(bad.group()):04X})"))


# Per message type, the fields a scan reads: (name, kind), kind one of the constants below. Made once
# per type, so that a request costs a getattr per string field (GetIngressInfo's: about a microsecond).
_STRING, _STRINGS, _MESSAGE, _MESSAGES, _MAP = range(5)
_PLANS: dict[str, tuple[tuple[str, int], ...]] = {}


def _plan(desc: Any) -> tuple[tuple[str, int], ...]:
    plan = _PLANS.get(desc.full_name)
    if plan is None:
        fields: list[tuple[str, int]] = []
        for field in desc.fields:
            if field.type == field.TYPE_STRING:
                fields.append((field.name, _STRINGS if field.is_repeated else _STRING))
            elif field.message_type is not None:
                if field.message_type.GetOptions().map_entry:
                    fields.append((field.name, _MAP))
                else:
                    fields.append((field.name, _MESSAGES if field.is_repeated else _MESSAGE))
        plan = _PLANS[desc.full_name] = tuple(fields)
    return plan


def _scan(message: Message, prefix: str, found: list[FieldViolation]) -> None:
    for name, kind in _plan(message.DESCRIPTOR):
        if kind == _STRING:
            _check(getattr(message, name), prefix + name, found)
        elif kind == _MESSAGE:
            if message.HasField(name):
                _scan(getattr(message, name), f"{prefix}{name}.", found)
        elif kind == _STRINGS:
            for i, item in enumerate(getattr(message, name)):
                _check(item, f"{prefix}{name}[{i}]", found)
        elif kind == _MESSAGES:
            for i, item in enumerate(getattr(message, name)):
                _scan(item, f"{prefix}{name}[{i}].", found)
        else:
            for key, item in getattr(message, name).items():
                if isinstance(key, str):
                    _check(key, prefix + name, found)
                if isinstance(item, str):
                    _check(item, f"{prefix}{name}[{key!r}]", found)
                elif isinstance(item, Message):
                    _scan(item, f"{prefix}{name}[{key!r}].", found)


def limit_of(request_type: Any) -> int:
    """The bytes a request of this type may take: a batch's more, an upload chunk's more still."""
    fields = request_type.DESCRIPTOR.fields
    if any(f.type == f.TYPE_BYTES for f in fields):
        return CHUNK_REQUEST_LIMIT
    batch = any(f.is_repeated and f.message_type is not None and not f.message_type.GetOptions().map_entry
                for f in fields)
    return BATCH_REQUEST_LIMIT if batch else REQUEST_LIMIT


def guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with its request checked as this module says (unary requests: all of ours)."""
    parse: Callable[[bytes], Any] = handler.request_deserializer  # type: ignore[assignment]
    request_type = parse.__self__  # type: ignore[attr-defined]  # the generated code passes Type.FromString
    limit = limit_of(request_type)
    type_name = request_type.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        if len(data) > limit:
            return Refused(InvalidArgument.of("request", f"must be at most {limit:,} bytes, got {len(data):,}"))
        try:
            request = parse(data)
        except DecodeError:
            return Refused(InvalidArgument.of("request", f"is not a valid {type_name} message"))
        problems = string_problems(request)
        return Refused(InvalidArgument(problems)) if problems else request

    replaced: dict[str, Any] = {"request_deserializer": deserialize}
    for kind in ("unary_unary", "unary_stream"):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            replaced[kind] = _refusing(behaviour, kind == "unary_stream")
    if handler.stream_unary is not None:
        replaced["stream_unary"] = _refusing_in_stream(handler.stream_unary)
    return handler._replace(**replaced)  # type: ignore[attr-defined]  # grpc's handlers: namedtuples


def _refusing_in_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A client stream's handler, reading a refused message as the error it is (its status, via `rpc`)."""

    async def checked(requests: Any) -> Any:
        async for request in requests:
            if isinstance(request, Refused):
                raise request.error
            yield request

    async def unary(requests: Any, context: Any) -> Any:
        return await behaviour(checked(requests), context)

    return unary


def _refusing(behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
    # The servicer's method: a refused request is counted as its call, as `rpc` counts the others.
    counted = behaviour.__self__.rpc_metrics[behaviour.__name__]  # type: ignore[attr-defined]

    async def refuse(request: Refused, context: Any) -> None:
        status = status_of(request.error, "request")
        counted.observe(status.code, 0.0)  # refused before any work
        await abort(context, status)

    if streaming:

        async def stream(request: Any, context: Any) -> Any:
            if isinstance(request, Refused):
                await refuse(request, context)
                return
            async for message in behaviour(request, context):
                yield message

        return stream

    async def unary(request: Any, context: Any) -> Any:
        if isinstance(request, Refused):
            await refuse(request, context)
        return await behaviour(request, context)

    return unary


class Guarded:
    """What a generated add_XServicer_to_server registers into: the server, its handlers guarded.

    The generated code registers each service twice, as a generic handler and by name (grpcio's
    faster path); both are made here from the guarded handlers.
    """

    def __init__(self, server: grpc.aio.Server):
        self.server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers as add_registered_method_handlers', guarded there

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        guarded = {name: guard(handler) for name, handler in handlers.items()}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
        self.server.add_registered_method_handlers(service, guarded)
