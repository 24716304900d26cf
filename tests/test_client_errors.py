"""The clients' errors: the status details the server sends, read the same way by both flavours."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from voxplane import FieldViolation, InvalidArgumentError
from voxplane._errors import from_rpc_error

BAD = {"e164_number": "+1785", "provider_ref": "", "aor_link": "mailto:x"}


def test_sync_and_async_clients_read_the_same_field_violations(tenant):
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as sync:
        numbers.create_number(BAD)

    async def create() -> None:
        async with tenant.async_numbers() as numbers:
            await numbers.create_number(BAD)

    with pytest.raises(InvalidArgumentError) as aio:  # from a grpc.aio.AioRpcError
        asyncio.run(create())
    violations = sync.value.field_violations
    assert isinstance(violations, tuple) and all(isinstance(v, FieldViolation) for v in violations)
    assert {v.field for v in violations} == {"e164_number", "provider_ref", "aor_link"}
    assert aio.value.field_violations == violations
    assert aio.value.message == sync.value.message


class _NotACall(grpc.RpcError):
    """What an interceptor may raise: a code and details, but no call and so no trailing metadata."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INVALID_ARGUMENT

    def details(self) -> str:
        return "refused before any call"


def test_an_error_that_is_not_a_call_has_no_field_violations():
    error = from_rpc_error(_NotACall())
    assert isinstance(error, InvalidArgumentError)
    assert (error.message, error.field_violations) == ("refused before any call", ())


@pytest.mark.parametrize(
    ("call", "field", "said"),
    [
        (lambda c: c["agents"].create_agent(name="J", nickname="j"), "nickname", "is not a field of CreateAgentRequest"),
        (lambda c: c["agents"].create_agent({"privacy": "PRIVACY_SECRET"}), "privacy", "'PRIVACY_SECRET' is not a Privacy"),
        (lambda c: c["calls"].list_calls(filter={"status": "CALL_STATUS_DONE"}), "filter.status", "is not a CallStatus"),
        (lambda c: c["calls"].list_calls({"filter": {"stared": True}}), "filter.stared", "is not a field of CallFilter"),
        (lambda c: c["numbers"].batch_create_numbers(requests=[{}, {"aorLnk": "sip:1@x"}]), "requests[1].aorLnk",
         "is not a field of CreateNumberRequest"),
        (lambda c: c["calls"].create_call(source="a", destination="+15005550001", timeout="soon"), "timeout",
         'Duration must end with letter "s": soon'),
        (lambda c: c["numbers"].iter_numbers(page_size="many").__next__(), "page_size", "invalid literal for int()"),
    ],
    ids=["unknown field", "unknown enum", "nested enum", "nested field", "batch item", "wrong type", "pages"],
)
def test_a_request_that_cannot_be_built_is_invalid_argument_naming_the_field(call, field, said):
    # Refused before anything is sent: no server is needed (nothing listens at this address).
    from voxplane import Agents, Calls, Numbers

    options = {"endpoint": "127.0.0.1:9", "api_key": "vxp_x"}
    clients = {"agents": Agents(options), "calls": Calls(options), "numbers": Numbers(options)}
    with pytest.raises(InvalidArgumentError) as caught:
        call(clients)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    [violation] = caught.value.field_violations
    assert violation.field == field
    assert said in violation.description
    assert caught.value.message.startswith(f"{field}: ")
