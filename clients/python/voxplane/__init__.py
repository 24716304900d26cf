"""voxplane: Python clients of the voxplane telephony control plane.

    from voxplane import Numbers
    numbers = Numbers(endpoint="127.0.0.1:50051", api_key="vxp_...")
    numbers.create_number(e164_number="+17853177343", provider_ref="p1", aor_link="sip:1001@sip.local")
"""

from ._agents import Agents, AsyncAgents
from ._calls import AsyncCalls, Calls
from ._client import ClientOptions
from ._errors import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    VoxplaneError,
)
from ._messaging import AsyncMessaging, Messaging
from ._numbers import AsyncNumbers, Numbers
from ._webhooks import AsyncWebhooks, Webhooks

__all__ = [
    "AbortedError",
    "Agents",
    "AlreadyExistsError",
    "AsyncAgents",
    "AsyncCalls",
    "AsyncMessaging",
    "AsyncNumbers",
    "AsyncWebhooks",
    "Calls",
    "ClientOptions",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "Messaging",
    "NotFoundError",
    "Numbers",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "VoxplaneError",
    "Webhooks",
]
