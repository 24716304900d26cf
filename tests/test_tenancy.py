"""Auth and tenancy of the Numbers service: keys, roles, and never seeing another workspace."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import select

from voxplane import (
    NotFoundError,
    Numbers,
    PermissionDeniedError,
    UnauthenticatedError,
)
from voxplane.numbers.v1 import numbers_pb2, numbers_pb2_grpc
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Role
from voxplane.services.persistence.tenancy import ApiKey


def create(numbers, e164: str):  # type: ignore[no-untyped-def]
    return numbers.create_number(provider_ref="t", e164_number=e164, aor_link="sip:1@sip.local")


def test_another_workspaces_number_is_not_found_on_every_rpc(tenant, other_tenant, fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as owner, other_tenant.numbers(Role.ADMIN) as stranger:
        number = create(owner, e164)
        calls = {
            "GetNumber": lambda: stranger.get_number(number.ref),
            "UpdateNumber": lambda: stranger.update_number(ref=number.ref, name="mine now"),
            "DeleteNumber": lambda: stranger.delete_number(number.ref),
            "GetIngressInfo": lambda: stranger.get_ingress_info(e164),
        }
        for rpc, call in calls.items():
            with pytest.raises(NotFoundError) as caught:
                call()
            assert tenant.ref not in caught.value.message, rpc
        assert number.ref not in [n.ref for n in stranger.iter_numbers()]
        assert owner.get_number(number.ref) == number  # untouched


def test_reader_reads_but_cannot_write(tenant, fresh_e164):
    with tenant.numbers() as member, tenant.numbers(Role.READER) as reader:
        number = create(member, fresh_e164())
        assert reader.get_number(number.ref) == number
        assert [n.ref for n in reader.iter_numbers()] == [number.ref]
        assert reader.get_ingress_info(number.e164_number).number_ref == number.ref
        writes = [
            lambda: create(reader, fresh_e164()),
            lambda: reader.update_number(ref=number.ref, name="x"),
            lambda: reader.delete_number(number.ref),
        ]
        for write in writes:
            with pytest.raises(PermissionDeniedError) as caught:
                write()
            assert "reader" in caught.value.message
        assert member.get_number(number.ref) == number


@pytest.mark.parametrize("role", [Role.ADMIN, Role.MEMBER, Role.SERVICE])
def test_writing_roles_can_create(tenant, fresh_e164, role):
    with tenant.numbers(role) as numbers:
        assert create(numbers, fresh_e164()).ref


@pytest.mark.parametrize("api_key", [None, "", "vxp_00000000_not-a-real-key", "Bearer"])
def test_missing_or_unknown_key_is_unauthenticated(server, api_key):
    with Numbers(endpoint=server.address, api_key=api_key) as numbers:
        for call in (lambda: numbers.list_numbers(), lambda: create(numbers, "+14155550100")):
            with pytest.raises(UnauthenticatedError):
                call()


@pytest.mark.parametrize("scheme", ["", "Basic "])
def test_a_key_without_the_bearer_scheme_is_told_to_send_it(server, tenant, scheme):
    channel = grpc.insecure_channel(server.address)
    stub = numbers_pb2_grpc.NumbersStub(channel)
    metadata = [("authorization", f"{scheme}{tenant.keys[Role.ADMIN]}")]
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListNumbers(numbers_pb2.ListNumbersRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == (
        "The authorization metadata has no Bearer scheme: send 'authorization: Bearer <api key>'."
    )
    channel.close()


def test_revoked_key_stops_working_at_once(tenant, db):
    with tenant.numbers(Role.MEMBER) as numbers:
        numbers.list_numbers()
        key_id = tenant.keys[Role.MEMBER].split("_")[1]
        db.transaction(lambda s: workspaces.revoke_key(s, key_id), write=True)
        with pytest.raises(UnauthenticatedError):
            numbers.list_numbers()
    with tenant.numbers(Role.ADMIN) as still_valid:
        still_valid.list_numbers()


def test_a_revoked_service_key_learns_no_route(tenant, db, fresh_e164):
    # GetIngressInfo asks for the key and the number in one round trip: the number found is not an answer.
    e164 = fresh_e164()
    with tenant.numbers() as owner:
        create(owner, e164)
    with tenant.numbers(Role.SERVICE) as edge:
        assert edge.get_ingress_info(e164).aor_link == "sip:1@sip.local"
        db.transaction(lambda s: workspaces.revoke_key(s, tenant.keys[Role.SERVICE].split("_")[1]), write=True)
        for asked in (e164, fresh_e164(), "12"):  # a number, none, not a number
            with pytest.raises(UnauthenticatedError):
                edge.get_ingress_info(asked)


def test_keys_are_stored_hashed(tenant, db):
    stored = db.transaction(lambda s: s.execute(select(ApiKey.__table__)).all(), write=False)
    flat = " ".join(str(value) for row in stored for value in row)
    for key in tenant.keys.values():
        assert key not in flat
        assert key.split("_")[1] in flat  # the public id is kept, for listing and revoking
