"""The one decorator every RPC goes through: auth, the unit of work, errors to status, the log line."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..persistence.db import Database
from . import errors
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
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
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
    status = status_pb2.Status(code=_CODES[type(domain)], message=str(domain))
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
        log.info("rpc", extra={"fields": fields})


Handler = TypeVar("Handler", bound=Callable[..., Any])


def rpc(access: Access) -> Callable[[Handler], Handler]:
    """Wraps `method(self, request, caller, session) -> response` as a grpc.aio handler.

    The caller is authenticated and the method runs in the same unit of work
    (one database round trip off the event loop); any error becomes its
    status, and one JSON line is logged per call.
    """

    def decorate(method: Handler) -> Handler:
        write = access is Access.WRITE

        @functools.wraps(method)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            full_method = f"/{self.service_name}/{method.__name__}"
            api_key = bearer_token(context.invocation_metadata())
            caller: Caller | None = None

            def unit(session: Session) -> Any:
                nonlocal caller
                caller = authenticate(session, api_key, access)
                return method(self, request, caller, session)

            db: Database = self.db
            code = grpc.StatusCode.OK
            try:
                return await db.run(unit, write=write)
            except Exception as error:  # noqa: BLE001 - every error becomes a status
                status = status_of(error, full_method)
                code = status.code
                await context.abort_with_status(status)
            finally:
                log_rpc(full_method, code, started, caller)

        return handler  # type: ignore[return-value]

    return decorate
