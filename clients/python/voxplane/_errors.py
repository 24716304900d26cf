"""One exception per gRPC status a caller can act on, all under `VoxplaneError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (e.g. `ingress_info.webhook`) and what is wrong."""

    field: str
    description: str


class VoxplaneError(Exception):
    """An RPC failed. `code` is the gRPC status code, `message` the server's sentence."""

    def __init__(self, code: grpc.StatusCode, message: str, field_violations: tuple[FieldViolation, ...] = ()):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.field_violations = field_violations


class InvalidArgumentError(VoxplaneError):
    """The request was malformed; `field_violations` names every bad field."""


class NotFoundError(VoxplaneError):
    pass


class AlreadyExistsError(VoxplaneError):
    pass


class FailedPreconditionError(VoxplaneError):
    pass


class AbortedError(VoxplaneError):
    """A concurrent change won (stale etag): read the resource again and retry."""


class UnauthenticatedError(VoxplaneError):
    pass


class PermissionDeniedError(VoxplaneError):
    pass


class UnavailableError(VoxplaneError):
    """The server or its database could not be reached; safe calls were already retried."""


class DeadlineExceededError(VoxplaneError):
    pass


class OutOfRangeError(VoxplaneError):
    """A position past what the server keeps (a stream's cursor older than its events): start over."""


class ResourceExhaustedError(VoxplaneError):
    """A cap or limit of the workspace was reached: its concurrent calls (retry once it has room), or a rate
    limit (README, "Rate limits"; the call was already retried after the delay the server asked for, as
    many times as `max_attempts` and the deadline allow)."""


_BY_CODE: dict[grpc.StatusCode, type[VoxplaneError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
}


def _status(error: grpc.Call) -> status_pb2.Status | None:
    """The google.rpc.Status the error carries in grpc-status-details-bin, if any."""
    if not callable(getattr(error, "trailing_metadata", None)):
        return None  # not a call (raised before one started, or by an interceptor): no status details
    try:
        return rpc_status.from_call(error)  # grpc.RpcError and grpc.aio.AioRpcError alike
    except ValueError:
        return None  # details whose code or message differ from the call's: not this error's


def retry_delay(error: grpc.RpcError) -> float | None:
    """Seconds the server asks the caller to wait before a retry (google.rpc.RetryInfo), if it says."""
    status = _status(cast(grpc.Call, error))
    for detail in status.details if status else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info) and info.HasField("retry_delay"):
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


def _field_violations(error: grpc.Call) -> tuple[FieldViolation, ...]:
    """The BadRequest field violations of the error's google.rpc.Status, if it carries one."""
    status = _status(error)
    if status is None:
        return ()
    violations: list[FieldViolation] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return tuple(violations)


def from_rpc_error(error: grpc.RpcError) -> VoxplaneError:
    # What a call raises is a grpc.Call too (an AioRpcError has the same methods).
    call = cast(grpc.Call, error)
    code = call.code()
    cls = _BY_CODE.get(code, VoxplaneError)
    return cls(code, call.details() or code.name, _field_violations(call))
