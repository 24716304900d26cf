"""Numbers over a real channel: every RPC's success and failure paths."""

from __future__ import annotations

import pytest

from voxplane import (
    AbortedError,
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
)


def create(numbers, e164: str, **fields):  # type: ignore[no-untyped-def]
    request = {"provider_ref": "trunk-1", "e164_number": e164, "aor_link": "sip:1001@sip.local", **fields}
    return numbers.create_number(request)


def test_create_normalises_to_e164_and_returns_the_number(tenant, fresh_e164):
    e164 = fresh_e164()
    spaced = f"+1 ({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    with tenant.numbers() as numbers:
        number = create(numbers, spaced, name="Sales line")
        assert number.e164_number == e164
        assert number.name == "Sales line"
        assert number.provider_ref == "trunk-1"
        assert number.aor_link == "sip:1001@sip.local"
        assert number.WhichOneof("routing") == "aor_link"
        assert number.ref and number.etag
        assert number.create_time.seconds > 0
        assert numbers.get_number(number.ref) == number
