"""The one decorator every RPC goes through: auth, the unit of work, errors to status, the log line."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, TypeVar, overload

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..persistence.db import Database, DatabaseUnavailable, error_message, is_transient
from . import errors, logs
from .auth import Access, Along, Caller, Role, Row, authenticate, authenticate_along, bearer_token

log = logging.getLogger("voxplane.rpc")

_CODES: dict[type[errors.DomainError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.OutOfRange: code_pb2.OUT_OF_RANGE,
    errors.Aborted: code_pb2.ABORTED,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.Unavailable: code_pb2.UNAVAILABLE,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.Unimplemented: code_pb2.UNIMPLEMENTED,
    errors.Internal: code_pb2.INTERNAL,
}


def _domain_error(error: Exception) -> errors.DomainError | None:
    if isinstance(error, errors.DomainError):
        return error
    if isinstance(error, StaleDataError):
        return errors.Aborted("The resource was changed by another request meanwhile; get it again and retry.")
    if isinstance(error, (sa_exc.DBAPIError, sa_exc.TimeoutError, DatabaseUnavailable)):
        # Only a database that is away or busy is worth retrying; a missing table or a full disk is not,
        # and must not look like a blip that clients retry forever. Either way, what it said is logged.
        message = error_message(error)
        if is_transient(error):
            log.warning("database unavailable (%s): %s", type(error).__name__, message)
            return errors.Unavailable("The database is unavailable right now; retry shortly.")
        if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, DatabaseUnavailable)):
            log.error("database error (%s): %s", type(error).__name__, message)
            return errors.Internal("Internal database error; it was logged.")
    return None


def status_of(error: Exception, method: str) -> grpc.Status:
    domain = _domain_error(error)
    if domain is None:
        # A bug of ours, never the caller's input: keep the details in our log.
        log.exception("unexpected error in %s", method, exc_info=error)
        return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message="Internal error; it was logged."))
    if domain is not error:
        log.warning("%s: %s (%s)", method, domain, type(error).__name__)
    # Subclasses of a domain error (e.g. a service's own FailedPrecondition) map to its code.
    code = next(_CODES[kind] for kind in type(domain).__mro__ if kind in _CODES)
    if isinstance(domain, errors.InvalidArgument):
        shown = errors.shown_violations(domain.violations)
        status = status_pb2.Status(code=code, message=errors.shorten("; ".join(f"{v.field}: {v.description}"
                                                                               for v in shown), 500))
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in shown
                ]
            )
        )
        status.details.append(detail)
    else:
        status = status_pb2.Status(code=code, message=errors.shorten(str(domain), 500))
        if isinstance(domain, errors.ResourceExhausted) and domain.retry_after is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromMilliseconds(max(1, math.ceil(domain.retry_after * 1000)))
            detail = any_pb2.Any()
            detail.Pack(retry)
            status.details.append(detail)
    return rpc_status.to_status(status)


async def abort(context: Context, status: grpc.Status) -> None:
    """Ends the call with `status`: what `abort_with_status` does, but through `abort` itself, which an
    interceptor wrapping the context sees (OpenTelemetry's records the code on the call's span)."""
    context.set_trailing_metadata(status.trailing_metadata)
    await context.abort(status.code, status.details)


def log_rpc(method: str, code: grpc.StatusCode, seconds: float, caller: Caller | None) -> None:
    if log.isEnabledFor(logging.INFO):
        fields = {
            "method": method,
            "code": code.name,
            "duration_ms": round(seconds * 1000, 3),
            "workspace": caller.workspace_ref if caller else None,
            "key_id": caller.key_id if caller else None,
        }
        logs.info(log, "rpc", fields)


# The types of what `rpc` takes and makes (typing only: nothing here runs per call).
S = TypeVar("S")  # the servicer (or the mixin the method is written in)
Req = TypeVar("Req")
Resp = TypeVar("Resp")

# What grpc.aio passes a handler. The generated servicer bases declare a
# `_ServicerContext` that is both the sync and the aio context; a handler that
# takes any aio context takes that too.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


@dataclass(frozen=True)
class Incoming:
    """What an async method may pass on when it calls other services for its caller, and what its
    `along` lookup found."""

    api_key: str
    time_remaining: float | None  # seconds left of the caller's deadline
    found: Row | None = None  # what the method's `along` lookup found, asked with the API key


class _Served:
    """One call as the decorator sees it: who made it, how it ended, its log line and its metrics.

    A plain object rather than a context manager: this runs on every call, the hot path included.
    """

    __slots__ = ("servicer", "method", "access", "metadata", "api_key", "started", "caller", "code", "found")

    def __init__(self, servicer: Any, method: str, access: Access, context: Context):
        self.servicer, self.method, self.access = servicer, method, access
        self.metadata = context.invocation_metadata()
        self.api_key = ""  # read by authenticate, where a malformed header becomes the call's status
        self.started = time.perf_counter()
        self.caller: Caller | None = None
        self.code = grpc.StatusCode.OK
        self.found: Row | None = None

    @property
    def full_method(self) -> str:
        return f"/{self.servicer.service_name}/{self.method}"

    async def authenticate(self, exempt_services: bool, along: Along | None = None) -> Caller:
        """The caller, once it took a token of its workspace's request rate (service keys need none for
        the `exempt_services` methods); with `along`, what it finds is `found`."""
        self.api_key = bearer_token(self.metadata)
        db = self.servicer.db
        if along is None:
            caller = self.caller = await authenticate(db, self.api_key, self.access)
        else:
            caller, self.found = await authenticate_along(db, self.api_key, self.access, along)
            self.caller = caller
        if not (exempt_services and caller.role is Role.SERVICE):
            limiter = self.servicer.limiter
            if not limiter.admit_now(caller.workspace_id):
                await limiter.admit(caller.workspace_id)
        return caller

    def incoming(self, context: Context) -> Incoming:
        return Incoming(self.api_key, context.time_remaining(), self.found)

    async def fail(self, context: Context, error: Exception) -> None:
        status = status_of(error, self.full_method)
        self.code = status.code
        await abort(context, status)

    def cancelled(self) -> None:
        self.code = grpc.StatusCode.CANCELLED  # the caller went away (or the server stops): not an answer

    def log(self) -> None:
        seconds = time.perf_counter() - self.started
        self.servicer.rpc_metrics[self.method].observe(self.code, seconds)
        log_rpc(self.full_method, self.code, seconds, self.caller)


class _Decorator(Protocol):
    """`rpc(access)`: the handler it makes has the shape the generated servicer base declares.

    A method of any shape but these three is refused, so a mistyped signature
    shows up in mypy, not at the first call.
    """

    @overload
    def __call__(
        self, method: Callable[[S, Req, Caller, Incoming], AsyncIterator[Resp]], /
    ) -> Callable[[S, Req, Context], AsyncIterator[Resp]]: ...
    @overload
    def __call__(
        self, method: Callable[[S, Req, Caller, Incoming], Coroutine[Any, Any, Resp]], /
    ) -> Callable[[S, Req, Context], Coroutine[Any, Any, Resp]]: ...
    @overload
    def __call__(
        self, method: Callable[[S, Req, Caller, Session], Resp], /
    ) -> Callable[[S, Req, Context], Coroutine[Any, Any, Resp]]: ...


class _QuickDecorator(Protocol):
    """`rpc(access, quick=True)`: the method needs no database, so it takes no session."""

    def __call__(
        self, method: Callable[[S, Req, Caller], Resp], /
    ) -> Callable[[S, Req, Context], Coroutine[Any, Any, Resp]]: ...


@overload
def rpc(access: Access, *, quick: Literal[True], exempt_services: bool = False) -> _QuickDecorator: ...
@overload
def rpc(access: Access, *, quick: Literal[False] = False, exempt_services: bool = False,
        along: Callable[[Any], Along] | None = None) -> _Decorator: ...
def rpc(access: Access, *, quick: bool = False, exempt_services: bool = False,
        along: Callable[[Any], Along] | None = None) -> _Decorator | _QuickDecorator:
    """Wraps a servicer method as a grpc.aio handler.

    The method is one of:
    - `method(self, request, caller, session) -> response`, run in one
      transaction on the database threads (the usual case);
    - with `quick`, `method(self, request, caller)`, which needs no database,
      run on the event loop;
    - `async def method(self, request, caller, incoming) -> response`, which
      does its own database work (`await self.db.lookup(...)` on the hot path,
      `await self.db.run_transaction(...)`) and may call other services with
      `incoming.api_key` within `incoming.time_remaining`;
    - `async def` generator `method(self, request, caller, incoming)`, a
      server-streaming RPC yielding its messages.
    An async method's `along(request)` names a lookup asked in the API key's
    round trip (auth.Along), its row passed as `incoming.found`: the hot path's
    one round trip. Either way the caller is authenticated first and takes a token of its
    workspace's request rate (core/ratelimits.py; with `exempt_services`, a
    `service` key takes none: the network's routing lookups), any error
    becomes its status, one JSON line is logged per call, and it is counted
    (Servicer.rpc_metrics).
    """

    # Typed loosely inside: one body serves every shape, told apart at decoration time.
    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        write = access is not Access.READ
        asynchronous = inspect.iscoroutinefunction(method)

        if inspect.isasyncgenfunction(method):

            @functools.wraps(method)
            async def stream_handler(self: Any, request: Any, context: Context) -> AsyncIterator[Any]:
                served = _Served(self, method.__name__, access, context)
                try:
                    caller = await served.authenticate(exempt_services)
                    async for message in method(self, request, caller, served.incoming(context)):
                        yield message
                except Exception as error:  # noqa: BLE001 - every error becomes a status
                    await served.fail(context, error)
                except asyncio.CancelledError:
                    served.cancelled()
                    raise
                finally:
                    served.log()

            return stream_handler

        @functools.wraps(method)
        async def handler(self: Any, request: Any, context: Context) -> Any:
            served = _Served(self, method.__name__, access, context)
            db: Database = self.db
            try:
                caller = await served.authenticate(exempt_services, along(request) if along else None)
                if asynchronous:
                    return await method(self, request, caller, served.incoming(context))
                if quick:
                    return method(self, request, caller)
                return await db.run_transaction(lambda session: method(self, request, caller, session), write=write)
            except Exception as error:  # noqa: BLE001 - every error becomes a status
                await served.fail(context, error)
            except asyncio.CancelledError:
                served.cancelled()
                raise
            finally:
                served.log()

        return handler

    return decorate
