"""The one decorator every RPC goes through: auth, the unit of work, errors to status, the log line."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from ..persistence.db import Database, LookupUnavailable
from . import errors, logs
from .auth import Access, Caller, authenticate, bearer_token

log = logging.getLogger("voxplane.rpc")

_CODES: dict[type[errors.DomainError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.Aborted: code_pb2.ABORTED,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
    errors.Unavailable: code_pb2.UNAVAILABLE,
}


def _domain_error(error: Exception) -> errors.DomainError | None:
    if isinstance(error, errors.DomainError):
        return error
    if isinstance(error, StaleDataError):
        return errors.Aborted("The resource was changed by another request meanwhile; get it again and retry.")
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, LookupUnavailable)):
        return errors.Unavailable("The database is unavailable right now; retry shortly.")
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
    status = status_pb2.Status(code=code, message=str(domain))
    if isinstance(domain, errors.InvalidArgument):
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in domain.violations
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


def log_rpc(method: str, code: grpc.StatusCode, started: float, caller: Caller | None) -> None:
    if log.isEnabledFor(logging.INFO):
        fields = {
            "method": method,
            "code": code.name,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "workspace": caller.workspace_ref if caller else None,
            "key_id": caller.key_id if caller else None,
        }
        logs.info(log, "rpc", fields)


Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class Incoming:
    """What an async method may pass on when it calls other services for its caller."""

    api_key: str
    time_remaining: float | None  # seconds left of the caller's deadline


def rpc(access: Access, *, quick: bool = False) -> Callable[[Handler], Handler]:
    """Wraps a servicer method as a grpc.aio handler.

    The method is one of:
    - `method(self, request, caller, session) -> response`, run in one
      transaction on the database threads (the usual case);
    - with `quick`, `method(self, request, caller)`, which makes only
      `db.fetch_one` lookups, run without a session (the hot path);
    - `async def method(self, request, caller, incoming) -> response`, which
      does its own database work (`await self.db.run(...)`) and may call other
      services with `incoming.api_key` within `incoming.time_remaining`;
    - `async def` generator `method(self, request, caller, incoming)`, a
      server-streaming RPC yielding its messages.
    Either way the caller is authenticated first, any error becomes its
    status, and one JSON line is logged per call.
    """

    def decorate(method: Handler) -> Handler:
        write = access is not Access.READ
        streaming = inspect.isasyncgenfunction(method)
        asynchronous = inspect.iscoroutinefunction(method)

        @contextlib.asynccontextmanager
        async def served(self: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Callable[[], Any]]:
            """Authenticates, and turns whatever the body raises into the call's status and log line."""
            started = time.perf_counter()
            full_method = f"/{self.service_name}/{method.__name__}"
            api_key = bearer_token(context.invocation_metadata())
            db: Database = self.db
            caller: Caller | None = None

            def authenticated() -> Caller:
                nonlocal caller
                caller = authenticate(db, api_key, access)
                return caller

            code = grpc.StatusCode.OK
            try:
                yield authenticated
            except Exception as error:  # noqa: BLE001 - every error becomes a status
                status = status_of(error, full_method)
                code = status.code
                await context.abort_with_status(status)
            finally:
                log_rpc(full_method, code, started, caller)

        def incoming(context: grpc.aio.ServicerContext) -> Incoming:
            return Incoming(bearer_token(context.invocation_metadata()), context.time_remaining())

        if streaming:

            @functools.wraps(method)
            async def stream_handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with served(self, context) as authenticated:
                    caller = await self.db.run_quick(authenticated)
                    async for message in method(self, request, caller, incoming(context)):
                        yield message

            return stream_handler  # type: ignore[return-value]

        @functools.wraps(method)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            db: Database = self.db
            async with served(self, context) as authenticated:
                if asynchronous:
                    caller = await db.run_quick(authenticated)
                    return await method(self, request, caller, incoming(context))

                def work() -> Any:
                    caller = authenticated()
                    if quick:
                        return method(self, request, caller)
                    return db.transaction(lambda session: method(self, request, caller, session), write=write)

                return await (db.run_quick(work) if quick else db.run(work))

        return handler  # type: ignore[return-value]

    return decorate
