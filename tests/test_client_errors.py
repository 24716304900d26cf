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
