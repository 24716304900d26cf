"""The Webhooks service end to end: events stored in the outbox (as the Calls service stores them)
are delivered by the test server's delivery worker to real HTTP receivers on 127.0.0.1, signed,
retried, in order per call; and the RPCs that manage secrets, settings, endpoints and deliveries."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from voxplane import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Webhooks,
)
from voxplane.services.core.auth import Role
from voxplane.services.events import outbox
from voxplane.services.persistence.base import new_ref, utcnow
from voxplane.services.persistence.tenancy import Workspace
from voxplane.services.webhooks import egress, posting
from voxplane.services.webhooks.models import Delivery
from voxplane.webhooks import VerificationError, verify
from voxplane.webhooks.v1 import webhooks_pb2 as pb

from .webhook_receiver import Receiver, Reply

FAST_RETRIES = "[0.2, 0.2, 0.2]"


@pytest.fixture
def allowed(environment):  # type: ignore[no-untyped-def]
    """Receivers on 127.0.0.1 allowed, and retries a fifth of a second apart (three of them)."""
    environment.set(VOXPLANE_WEBHOOK_ALLOW="127.0.0.0/8", VOXPLANE_WEBHOOK_RETRY_SCHEDULE=FAST_RETRIES)
    return environment


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def webhooks_of(tenant, role: Role = Role.MEMBER) -> Webhooks:  # type: ignore[no-untyped-def]
    return Webhooks(endpoint=tenant.address, api_key=tenant.keys[role])


@pytest.fixture
def secret(tenant) -> str:  # type: ignore[no-untyped-def]
    return webhooks_of(tenant).create_signing_secret().secret


def workspace_id(db, tenant) -> int:  # type: ignore[no-untyped-def]
    return db.transaction(lambda s: s.scalar(select(Workspace.id).where(Workspace.ref == tenant.ref)), write=False)


def store_event(  # type: ignore[no-untyped-def]
    db, tenant, call_ref: str, sequence: int, kind: str = "ANSWER", *, webhook: str | None = None,
    direction: str = "OUTBOUND", **payload,
) -> str:
    """Appends one call event to the outbox, as the Calls service does; returns its event id."""
    payload = {"source": "+14155550100", "destination": "+14155550111", **payload}
    ws = workspace_id(db, tenant)
    event = outbox.NewEvent(ws, "call", call_ref, sequence, kind, utcnow(), direction, webhook, payload)
    return db.transaction(lambda s: outbox.append(s, [event])[0], write=True)


def eventually(check: Callable[[], object], timeout: float = 20) -> object:
    """`check()`'s first truthy value, asked until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not so after {timeout} s: {check}")
        time.sleep(0.05)


def delivery_of(tenant, event_id: str, status: int | None = None) -> pb.WebhookDelivery:  # type: ignore[no-untyped-def]
    """The delivery of `event_id`, once it is in `status` (any, if None)."""

    def found() -> pb.WebhookDelivery | None:
        page = webhooks_of(tenant).list_webhook_deliveries(filter={"event_id": event_id})
        matching = [d for d in page.deliveries if status is None or d.status == status]
        return matching[0] if matching else None

    return eventually(found)  # type: ignore[return-value]


def data_of(received) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return json.loads(received.body)["data"]


def keep_log(tenant) -> None:  # type: ignore[no-untyped-def]
    webhooks_of(tenant).update_webhook_settings(keep_delivery_log=True)


# --- signatures ---------------------------------------------------------------------------------


def _signed(secret: str, body: str, at: datetime | None = None) -> dict[str, str]:
    at = at or datetime.now(timezone.utc)
    return {"webhook-id": "evt_1", "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign("evt_1", at, body)}


def test_verify_accepts_a_good_signature_and_refuses_a_tampered_body_a_stale_timestamp_and_another_secret():
    secret, body = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", '{"type":"call.answer"}'
    headers = _signed(secret, body)
    verify(headers, body.encode(), secret)
    with pytest.raises(VerificationError, match="no signature"):
        verify(headers, body.replace("answer", "hangup"), secret)
    with pytest.raises(VerificationError, match="seconds from now"):
        verify(_signed(secret, body, datetime.now(timezone.utc) - timedelta(seconds=301)), body, secret)
    verify(_signed(secret, body, datetime.now(timezone.utc) - timedelta(seconds=301)), body, secret, tolerance=600)
    with pytest.raises(VerificationError, match="no signature"):
        verify(headers, body, "whsec_" + "c2VjcmV0IG9mIGFub3RoZXIgd29ya3NwYWNlIQ==")


@pytest.mark.parametrize("headers", [
    {},
    {"webhook-id": "e", "webhook-timestamp": "soon", "webhook-signature": "v1,AAAA"},
    {"webhook-id": "e", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1"},
    {"webhook-id": "e", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,not base64!"},
    {"webhook-id": "e", "webhook-timestamp": str(int(time.time())), "webhook-signature": "nonsense"},
])
def test_verify_refuses_malformed_headers_with_a_verification_error_not_a_value_error(headers):
    with pytest.raises(VerificationError):
        verify(headers, b"{}", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


def test_a_delivery_is_signed_so_that_both_verifiers_accept_it(db, tenant, secret, allowed, receiver):
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 44
    call = new_ref()
    event_id = store_event(db, tenant, call, 1, "ANSWER", webhook=receiver.url())
    (got,) = receiver.wait_for(1)
    assert got.event_id == event_id and got.headers["content-type"] == "application/json"
    verify(got.headers, got.body, secret)
    document = Webhook(secret).verify(got.body, got.headers)  # the standardwebhooks package itself
    assert document["type"] == "call.answer"
    assert document["data"]["eventId"] == event_id and document["data"]["callRef"] == call
    assert document["data"]["sequence"] == "1" and document["data"]["type"] == "CALL_EVENT_TYPE_ANSWER"


def test_after_a_rotation_deliveries_carry_both_signatures_for_a_day(db, tenant, secret, allowed, receiver):
    rotated = webhooks_of(tenant).rotate_signing_secret()
    assert rotated.secret != secret
    expires = rotated.previous_expire_time.ToDatetime(timezone.utc)
    assert timedelta(hours=23) < expires - datetime.now(timezone.utc) <= timedelta(hours=24)
    store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split()) == 2
    verify(got.headers, got.body, secret)
    verify(got.headers, got.body, rotated.secret)
    described = webhooks_of(tenant).get_signing_secret()
    assert described.secret == "" and described.previous_expire_time == rotated.previous_expire_time


def test_signing_secret_rpcs_refuse_what_the_state_forbids(tenant):
    webhooks = webhooks_of(tenant)
    with pytest.raises(NotFoundError):
        webhooks.get_signing_secret()
    with pytest.raises(FailedPreconditionError, match="create one"):
        webhooks.rotate_signing_secret()
    made = webhooks.create_signing_secret()
    with pytest.raises(AlreadyExistsError, match="rotate"):
        webhooks.create_signing_secret()
    shown = webhooks.get_signing_secret()
    assert shown.secret == "" and shown.create_time == made.create_time and not shown.HasField("previous_expire_time")


def test_without_a_signing_secret_deliveries_wait_then_go_once_one_is_made(db, tenant, allowed, receiver):
    keep_log(tenant)
    event_id = store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
    held = eventually(lambda: "signing secret" in delivery_of(tenant, event_id).last_error and delivery_of(tenant, event_id))
    assert held.status == pb.DELIVERY_STATUS_PENDING and held.attempts == 0 and receiver.requests == []
    secret = webhooks_of(tenant).create_signing_secret().secret
    (got,) = receiver.wait_for(1)
    verify(got.headers, got.body, secret)
    assert delivery_of(tenant, event_id, pb.DELIVERY_STATUS_DELIVERED).last_error == ""


# --- retries ------------------------------------------------------------------------------------


def test_a_receiver_failing_twice_gets_the_event_again_with_the_same_webhook_id(db, tenant, secret, allowed):
    receiver = Receiver([500, 503])
    try:
        keep_log(tenant)
        event_id = store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
        got = receiver.wait_for(3)
        assert {r.event_id for r in got} == {event_id}
        delivered = delivery_of(tenant, event_id, pb.DELIVERY_STATUS_DELIVERED)
        assert delivered.attempts == 3 and delivered.last_response_code == 200 and delivered.HasField("deliver_time")
    finally:
        receiver.close()


def test_retries_stop_after_the_schedule_and_the_delivery_fails(db, tenant, secret, allowed):
    receiver = Receiver([500] * 10)
    try:
        event_id = store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
        failed = delivery_of(tenant, event_id, pb.DELIVERY_STATUS_FAILED)
        assert failed.attempts == 4 and "gave up after 4 attempts" in failed.last_error
        assert failed.last_response_code == 500 and not failed.HasField("next_attempt_time")
        assert len(receiver.requests) == 4
    finally:
        receiver.close()


def test_a_429_waits_as_long_as_retry_after_says(db, tenant, secret, allowed):
    receiver = Receiver([(429, {"retry-after": "1"})])
    try:
        store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
        first, second = receiver.wait_for(2)
        assert second.time - first.time >= 0.9  # the schedule alone says 0.2 s
    finally:
        receiver.close()


@pytest.mark.parametrize("status", [400, 404, 302])
def test_other_4xx_and_redirects_are_not_retried(db, tenant, secret, allowed, status):
    receiver = Receiver([(status, {"location": "http://127.0.0.1:9/elsewhere"})])
    try:
        event_id = store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
        failed = delivery_of(tenant, event_id, pb.DELIVERY_STATUS_FAILED)
        assert failed.attempts == 1 and failed.last_response_code == status and len(receiver.requests) == 1
        assert ("redirects are not followed" in failed.last_error) == (status == 302)
    finally:
        receiver.close()


def test_410_gone_disables_the_endpoint_until_it_is_enabled_again(db, tenant, secret, allowed):
    receiver = Receiver([410])
    try:
        webhooks = webhooks_of(tenant)
        url = receiver.url()
        gone = delivery_of(tenant, store_event(db, tenant, new_ref(), 1, webhook=url), pb.DELIVERY_STATUS_FAILED)
        assert "410" in gone.last_error
        (endpoint,) = [e for e in webhooks.list_webhook_endpoints().endpoints if e.url == url]
        assert not endpoint.enabled and "410" in endpoint.disabled_reason and endpoint.HasField("disable_time")
        held = delivery_of(tenant, store_event(db, tenant, new_ref(), 1, webhook=url), pb.DELIVERY_STATUS_FAILED)
        assert held.attempts == 0 and "disabled" in held.last_error and len(receiver.requests) == 1
        enabled = webhooks.update_webhook_endpoint(url=url, enabled=True)
        assert enabled.enabled and enabled.disabled_reason == "" and not enabled.HasField("disable_time")
        webhooks.retry_webhook_delivery(held.ref)
        assert receiver.wait_for(2)[1].event_id == held.event_id
    finally:
        receiver.close()


def test_one_calls_failing_delivery_holds_back_its_later_events_only(db, tenant, secret, allowed):
    allowed.set(VOXPLANE_WEBHOOK_RETRY_SCHEDULE=json.dumps([0.2] * 1000))  # never gives up meanwhile
    receiver = Receiver(by_path={"/stuck": [500] * 1000})  # fails until the test says otherwise
    try:
        stuck, free = new_ref(), new_ref()
        for sequence in (1, 2, 3):
            store_event(db, tenant, stuck, sequence, webhook=receiver.url("/stuck"))
            store_event(db, tenant, free, sequence, webhook=receiver.url("/free"))
        eventually(lambda: [int(data_of(r)["sequence"]) for r in receiver.requests if r.path == "/free"] == [1, 2, 3])
        assert {int(data_of(r)["sequence"]) for r in receiver.requests if r.path == "/stuck"} == {1}
        receiver.script("/stuck", [])
        eventually(lambda: [int(data_of(r)["sequence"]) for r in receiver.requests if r.path == "/stuck"][-3:] == [1, 2, 3])
    finally:
        receiver.close()


# --- where deliveries go, and where they may not ------------------------------------------------


def test_loopback_is_refused_unless_allowed(db, tenant, secret, environment, receiver):
    environment.set(VOXPLANE_WEBHOOK_ALLOW="")
    failed = delivery_of(tenant, store_event(db, tenant, new_ref(), 1, webhook=receiver.url()), pb.DELIVERY_STATUS_FAILED)
    assert "loopback" in failed.last_error and "VOXPLANE_WEBHOOK_ALLOW" in failed.last_error
    assert failed.attempts == 1 and failed.last_response_code == 0 and receiver.requests == []


def test_a_host_name_is_checked_by_the_addresses_it_resolves_to(db, tenant, secret, environment, receiver):
    environment.set(VOXPLANE_WEBHOOK_ALLOW="10.0.0.0/8")  # allows private addresses, not loopback
    url = f"http://localhost:{receiver.port}/hook"
    failed = delivery_of(tenant, store_event(db, tenant, new_ref(), 1, webhook=url), pb.DELIVERY_STATUS_FAILED)
    assert "localhost resolves to" in failed.last_error and "loopback" in failed.last_error
    assert receiver.requests == []
    environment.set(VOXPLANE_WEBHOOK_ALLOW="localhost")  # a name allowed whatever it resolves to
    store_event(db, tenant, new_ref(), 1, webhook=url)
    (got,) = receiver.wait_for(1)
    assert got.headers["host"] == f"localhost:{receiver.port}"  # pinned to the address, named as the URL names it


class Resolver:
    """DNS answers for one name, stubbed on the test server's event loop (the only thing stubbed): the
    `answers` in turn, the last one again after that; every other name resolves as usual."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str, answers: list[list[str]]):
        self.name, self.answers, self.lookups = name, answers, 0
        self._resolve = loop.getaddrinfo

    async def getaddrinfo(self, host, port, **options):  # type: ignore[no-untyped-def]
        if host != self.name:
            return await self._resolve(host, port, **options)
        addresses = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port or 0))) for a in addresses]


@pytest.fixture
def resolver(server, monkeypatch):  # type: ignore[no-untyped-def]
    """`resolver(name, *answers)`: the server's lookups of `name` get `answers`, one per lookup."""

    def stub(name: str, *answers: list[str]) -> Resolver:
        made = Resolver(server.loop, name, list(answers))
        monkeypatch.setattr(server.loop, "getaddrinfo", made.getaddrinfo)
        return made

    return stub


@pytest.fixture
def pinned_and_trap() -> Iterator[tuple[Receiver, Receiver]]:
    """A receiver on 127.0.0.2 (standing in for an allowed, public address) and a trap on 127.0.0.1 at the
    same port (the internal address a rebinding answer points at)."""
    pinned = Receiver(host="127.0.0.2")
    trap = Receiver(host="127.0.0.1", port=pinned.port)
    yield pinned, trap
    pinned.close()
    trap.close()


def test_a_rebinding_answer_never_gets_the_request(db, tenant, secret, environment, resolver, pinned_and_trap):
    pinned, trap = pinned_and_trap
    environment.set(VOXPLANE_WEBHOOK_ALLOW="127.0.0.2/32")  # the first answer's address only
    dns = resolver("rebind.example", ["127.0.0.2"], ["127.0.0.1"])  # checked, then rebound to loopback
    url = f"http://rebind.example:{pinned.port}/hook"

    first = store_event(db, tenant, new_ref(), 1, webhook=url)
    (got,) = pinned.wait_for(1)

    assert got.event_id == first and got.headers["host"] == f"rebind.example:{pinned.port}"
    assert dns.lookups == 1  # the connection went to the checked address: nothing looked the name up again
    rebound = store_event(db, tenant, new_ref(), 1, webhook=url)  # the next request's lookup gets loopback
    failed = delivery_of(tenant, rebound, pb.DELIVERY_STATUS_FAILED)
    assert "rebind.example resolves to 127.0.0.1, which is a loopback address" in failed.last_error
    assert dns.lookups == 2 and trap.requests == [] and len(pinned.requests) == 1


def test_a_name_with_one_private_address_among_several_is_refused(
    db, tenant, secret, environment, resolver, pinned_and_trap
):
    pinned, trap = pinned_and_trap
    environment.set(VOXPLANE_WEBHOOK_ALLOW="127.0.0.2/32")
    resolver("mixed.example", ["127.0.0.2", "10.0.0.7"])  # the first would be allowed, the second is private
    url = f"http://mixed.example:{pinned.port}/hook"

    failed = delivery_of(tenant, store_event(db, tenant, new_ref(), 1, webhook=url), pb.DELIVERY_STATUS_FAILED)

    assert "mixed.example resolves to 10.0.0.7, which is a private address" in failed.last_error
    assert failed.attempts == 1 and pinned.requests == [] and trap.requests == []


@pytest.mark.parametrize("address, kind", [
    ("10.1.2.3", "private"), ("192.168.0.1", "private"), ("172.16.5.4", "private"), ("fd12::1", "private"),
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("100.64.0.1", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::7f00:1", "loopback"), ("2002:7f00:1::", "loopback"),
])
def test_every_kind_of_internal_address_is_refused(address, kind):
    assert kind in (egress.why_refused(egress.ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "217.116.118.254"])
def test_public_addresses_are_not_refused(address):
    assert egress.why_refused(egress.ipaddress.ip_address(address)) is None


def test_the_workspace_defaults_serve_calls_that_name_no_webhook_by_direction_and_whitelist(
    db, tenant, secret, allowed, receiver
):
    webhooks = webhooks_of(tenant)
    webhooks.update_webhook_settings(incoming_url=receiver.url("/in"), outgoing_url=receiver.url("/out"))
    inbound = store_event(db, tenant, new_ref(), 1, "NEW_CALL", direction="INBOUND")
    outbound = store_event(db, tenant, new_ref(), 1, "NEW_CALL", direction="OUTBOUND")
    got = receiver.wait_for(2)
    assert {(r.path, r.event_id) for r in got} == {("/in", inbound), ("/out", outbound)}

    agent = new_ref()
    webhooks.update_webhook_settings(whitelist=[agent, "+1 415 555 0199"])
    assert webhooks.get_webhook_settings().whitelist == [agent, "+14155550199"]
    listed = store_event(db, tenant, new_ref(), 1, "NEW_CALL", source=agent)
    unlisted = store_event(db, tenant, new_ref(), 1, "NEW_CALL")  # +14155550100 to +14155550111: neither listed
    own = store_event(db, tenant, new_ref(), 1, "NEW_CALL", webhook=receiver.url("/own"))  # its own webhook: always
    got = receiver.wait_for(4)[2:]
    assert {r.event_id for r in got} == {listed, own}
    assert webhooks.list_webhook_deliveries(filter={"event_id": unlisted}).deliveries == []


def test_a_sipgate_endpoint_gets_sipgate_io_forms_and_only_the_events_sipgate_io_names(
    db, tenant, secret, allowed, receiver
):
    url = receiver.url("/sipgate")
    endpoint = webhooks_of(tenant).update_webhook_endpoint(url=url, payload_format=pb.PAYLOAD_FORMAT_SIPGATE)
    assert endpoint.enabled and endpoint.payload_format == pb.PAYLOAD_FORMAT_SIPGATE
    call = new_ref()
    store_event(db, tenant, call, 1, "NEW_CALL", webhook=url, direction="INBOUND", destination=new_ref())
    store_event(db, tenant, call, 2, "RINGING", webhook=url, direction="INBOUND")
    store_event(db, tenant, call, 3, "DATA", webhook=url, direction="INBOUND", digits="42#")
    store_event(db, tenant, call, 4, "HANGUP", webhook=url, direction="INBOUND", hangupCause="HANGUP_CAUSE_BUSY")
    got = receiver.wait_for(3)
    forms = [dict(parse_qsl(r.body.decode())) for r in got]
    assert [f["event"] for f in forms] == ["newCall", "dtmf", "hangup"]
    assert all(r.headers["content-type"] == "application/x-www-form-urlencoded" for r in got)
    verify(got[0].headers, got[0].body, secret)
    assert forms[0]["from"] == "14155550100" and forms[0]["direction"] == "in" and forms[0]["callId"] == call
    assert forms[0]["user[]"]  # the agent the inbound call rings
    assert forms[1]["dtmf"] == "42#" and forms[2]["cause"] == "busy"


def test_post_now_posts_once_as_the_endpoint_wants_and_returns_the_reply(db, tenant, secret, allowed):
    receiver = Receiver([(200, {"content-type": "application/json"})])
    try:
        event_id = store_event(db, tenant, new_ref(), 1, "NEW_CALL", webhook=None)
        event = db.transaction(lambda s: s.scalar(select(outbox.Event).where(outbox.Event.ref == event_id)), write=False)
        ws = workspace_id(db, tenant)
        reply = asyncio.run(posting.post_now(db, ws, receiver.url(), event, timeout=5))
        assert reply.ok and reply.status_code == 200 and reply.content_type == "application/json"
        verify(receiver.requests[0].headers, receiver.requests[0].body, secret)
        unreachable = asyncio.run(posting.post_now(db, ws, "http://127.0.0.1:9/closed", event, timeout=5))
        assert not unreachable.ok and unreachable.error and unreachable.status_code == 0
    finally:
        receiver.close()


def test_delivered_deliveries_are_dropped_unless_the_workspace_keeps_a_log(db, tenant, secret, allowed, receiver):
    event_id = store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
    receiver.wait_for(1)
    eventually(lambda: not db.transaction(
        lambda s: s.scalar(select(Delivery.id).where(Delivery.event_id == event_id)), write=False))
    keep_log(tenant)
    kept = store_event(db, tenant, new_ref(), 1, webhook=receiver.url())
    assert delivery_of(tenant, kept, pb.DELIVERY_STATUS_DELIVERED).event_type == "call.answer"


# --- the RPCs -----------------------------------------------------------------------------------


def test_settings_are_set_by_mask_read_back_and_cleared(tenant):
    webhooks = webhooks_of(tenant)
    assert webhooks.get_webhook_settings() == pb.WebhookSettings()
    set_ = webhooks.update_webhook_settings(incoming_url="https://example.com/in", keep_delivery_log=True)
    assert set_.incoming_url == "https://example.com/in" and set_.keep_delivery_log and set_.HasField("update_time")
    changed = webhooks.update_webhook_settings(outgoing_url="https://example.com/out")
    assert changed.incoming_url == "https://example.com/in" and changed.outgoing_url == "https://example.com/out"
    cleared_one = webhooks.update_webhook_settings(
        pb.UpdateWebhookSettingsRequest(update_mask={"paths": ["incoming_url"]})
    )
    assert cleared_one.incoming_url == "" and cleared_one.outgoing_url == "https://example.com/out"
    assert webhooks.clear_webhook_settings() == pb.WebhookSettings()
    assert webhooks.get_webhook_settings() == pb.WebhookSettings()


@pytest.mark.parametrize("fields, field", [
    ({"incoming_url": "ftp://example.com/x"}, "incoming_url"),
    ({"outgoing_url": "not a url"}, "outgoing_url"),
    ({"whitelist": ["+1415555019"]}, "whitelist[0]"),
    ({"whitelist": [new_ref(), "alice"]}, "whitelist[1]"),
    ({"update_mask": {"paths": ["webhook"]}}, "update_mask"),
])
def test_bad_settings_are_invalid_argument_naming_the_field(tenant, fields, field):
    with pytest.raises(InvalidArgumentError) as refused:
        webhooks_of(tenant).update_webhook_settings(**fields)
    assert [v.field for v in refused.value.field_violations] == [field]


def test_a_reader_may_look_but_not_change(tenant):
    reader = webhooks_of(tenant, Role.READER)
    reader.get_webhook_settings()
    with pytest.raises(PermissionDeniedError):
        reader.create_signing_secret()


def test_deliveries_are_listed_newest_first_filtered_and_paged(db, tenant, secret, environment):
    environment.set(VOXPLANE_WEBHOOK_ALLOW="")  # every delivery to 127.0.0.1 fails at once
    keep_log(tenant)
    webhooks = webhooks_of(tenant)
    call = new_ref()
    events = [store_event(db, tenant, call, n, webhook=f"http://127.0.0.1:9/{n % 2}") for n in range(1, 6)]
    eventually(lambda: len(webhooks.list_webhook_deliveries(
        filter={"resource_ref": call, "status": pb.DELIVERY_STATUS_FAILED}).deliveries) == 5)
    first = webhooks.list_webhook_deliveries(filter={"resource_ref": call}, page_size=2)
    second = webhooks.list_webhook_deliveries(filter={"resource_ref": call}, page_size=2,
                                              page_token=first.next_page_token)
    third = webhooks.list_webhook_deliveries(filter={"resource_ref": call}, page_size=2,
                                             page_token=second.next_page_token)
    listed = [d.event_id for page in (first, second, third) for d in page.deliveries]
    assert listed == events[::-1] and third.next_page_token == ""
    to_one = webhooks.list_webhook_deliveries(filter={"resource_ref": call, "url": "http://127.0.0.1:9/1"})
    assert [d.event_id for d in to_one.deliveries] == [events[4], events[2], events[0]]
    assert webhooks.list_webhook_deliveries(filter={"resource_ref": call, "status": pb.DELIVERY_STATUS_PENDING}).deliveries == []
    future = Timestamp(seconds=int(time.time()) + 3600)
    later = pb.ListWebhookDeliveriesRequest(filter=pb.DeliveryFilter(resource_ref=call, created_after=future))
    assert webhooks.list_webhook_deliveries(later).deliveries == []
    with pytest.raises(InvalidArgumentError, match="page_token"):
        webhooks.list_webhook_deliveries(filter={"url": "http://127.0.0.1:9/1"}, page_token=first.next_page_token)
    with pytest.raises(InvalidArgumentError, match="filter.status"):
        webhooks.list_webhook_deliveries(filter={"status": 9})
    with pytest.raises(InvalidArgumentError, match="page_size"):
        webhooks.list_webhook_deliveries(page_size=-1)


def test_failed_deliveries_are_redelivered_one_or_all_since_a_time(db, tenant, secret, environment):
    environment.set(VOXPLANE_WEBHOOK_ALLOW="", VOXPLANE_WEBHOOK_RETRY_SCHEDULE=FAST_RETRIES)
    receiver = Receiver()
    try:
        webhooks = webhooks_of(tenant)
        started = Timestamp(seconds=int(time.time()) - 1)
        events = [store_event(db, tenant, new_ref(), 1, webhook=receiver.url()) for _ in range(3)]
        failed = [delivery_of(tenant, e, pb.DELIVERY_STATUS_FAILED) for e in events]
        environment.set(VOXPLANE_WEBHOOK_ALLOW="127.0.0.0/8", VOXPLANE_WEBHOOK_RETRY_SCHEDULE=FAST_RETRIES)
        again = webhooks.retry_webhook_delivery(failed[0].ref)
        assert again.status == pb.DELIVERY_STATUS_PENDING and again.attempts == 0 and again.last_error == ""
        assert receiver.wait_for(1)[0].event_id == events[0]
        assert webhooks.retry_webhook_deliveries(pb.RetryWebhookDeliveriesRequest(since=started, url=receiver.url())).count == 2
        assert {r.event_id for r in receiver.wait_for(3)} == set(events)
        with pytest.raises(InvalidArgumentError, match="since"):
            webhooks.retry_webhook_deliveries()
        with pytest.raises(InvalidArgumentError, match="ref"):
            webhooks.retry_webhook_delivery("")
        with pytest.raises(NotFoundError):
            webhooks.retry_webhook_delivery(new_ref())
    finally:
        receiver.close()


def test_workspaces_see_only_their_own_secrets_settings_endpoints_and_deliveries(
    db, tenant, other_tenant, secret, environment
):
    environment.set(VOXPLANE_WEBHOOK_ALLOW="")
    mine, theirs = webhooks_of(tenant), webhooks_of(other_tenant)
    mine.update_webhook_settings(incoming_url="https://example.com/mine", keep_delivery_log=True)
    event_id = store_event(db, tenant, new_ref(), 1, webhook="http://127.0.0.1:9/mine")
    delivery = delivery_of(tenant, event_id, pb.DELIVERY_STATUS_FAILED)
    with pytest.raises(NotFoundError):
        theirs.get_signing_secret()
    assert theirs.get_webhook_settings() == pb.WebhookSettings()
    assert theirs.list_webhook_endpoints().endpoints == []
    assert theirs.list_webhook_deliveries(filter={"event_id": event_id}).deliveries == []
    with pytest.raises(NotFoundError):
        theirs.retry_webhook_delivery(delivery.ref)
    assert theirs.retry_webhook_deliveries(pb.RetryWebhookDeliveriesRequest(since=Timestamp(seconds=0))).count == 0
    assert mine.list_webhook_deliveries(filter={"event_id": event_id}).deliveries[0].status == pb.DELIVERY_STATUS_FAILED
    assert theirs.create_signing_secret().secret != secret  # their own, beside ours
    mine.get_signing_secret()


def test_endpoints_are_listed_disabled_first_and_paged(tenant):
    webhooks = webhooks_of(tenant)
    urls = [f"https://example.com/{n}" for n in range(5)]
    for url in urls:
        webhooks.update_webhook_endpoint(url=url)
    webhooks.update_webhook_endpoint(url=urls[3], enabled=False)
    listed, token = [], ""
    while True:
        page = webhooks.list_webhook_endpoints(page_size=2, page_token=token)
        listed += page.endpoints
        token = page.next_page_token
        if not token:
            break
    assert [e.url for e in listed] == [urls[3], urls[0], urls[1], urls[2], urls[4]]
    assert listed[0].disabled_reason == "disabled by request"
    with pytest.raises(InvalidArgumentError, match="url"):
        webhooks.update_webhook_endpoint(url="gopher://example.com")


def test_a_resource_left_with_no_ready_delivery_is_mended_by_the_sweep(db, tenant, secret, allowed, receiver):
    """What a race between replicas can leave on PostgreSQL (a dispatcher saw a delivery pending that a
    worker was delivering): a pending delivery not marked ready, with none ahead of it."""
    stranded = store_event(db, tenant, new_ref(), 1, webhook=None)  # no URL: no delivery of its own
    event = db.transaction(lambda s: s.scalar(select(outbox.Event).where(outbox.Event.ref == stranded)),
                           write=False)

    def strand(session):  # type: ignore[no-untyped-def]
        session.add(Delivery(workspace_id=event.workspace_id, event_row_id=event.id, event_id=event.ref,
                             event_type="call.answer", resource_ref=event.resource_ref, sequence=1,
                             url=receiver.url(), status="PENDING", ready=False, next_attempt_time=utcnow()))

    db.transaction(strand, write=True)
    assert receiver.wait_for(1)[0].event_id == event.ref


def test_a_host_gets_at_most_its_connections_in_flight_and_idle_hosts_are_closed_past_the_cap(allowed, monkeypatch):
    """The poster's lanes: requests beyond a host's connections wait for room (none is lost), and past
    HOSTS_KEPT the least recently used idle host is closed, so tenants' many hosts hold no sockets."""
    monkeypatch.setattr(egress.GuardedTransport, "HOSTS_KEPT", 2)
    slow = Receiver([Reply(status=200, delay=0.2)] * 12)
    others = [Receiver(), Receiver()]
    body = posting.Body('{"type": "call.answer"}', "application/json")

    async def scenario() -> tuple[list[posting.Reply], list[tuple[str, str, int]]]:
        poster = egress.Poster(connections=egress.LANE)  # one lane: 4 requests in flight at most
        try:
            started = time.monotonic()
            replies = await asyncio.gather(*(
                posting.post(poster, slow.url(), f"e{i}", body, ["whsec_" + "A" * 32], timeout=10) for i in range(12)
            ))
            assert time.monotonic() - started >= 0.55  # 12 requests of 0.2 s, 4 at a time: three rounds
            for other in others:
                assert (await posting.post(poster, other.url(), "x", body, ["whsec_" + "A" * 32], timeout=10)).ok
            return replies, list(poster._transport._hosts)  # noqa: SLF001 - what the poster keeps open
        finally:
            await poster.aclose()

    try:
        replies, kept = asyncio.run(scenario())
        assert all(reply.ok for reply in replies) and len(slow.requests) == 12
        assert [port for _, _, port in kept] == [int(o.url().split(":")[2].split("/")[0]) for o in others]
    finally:
        for receiver in (slow, *others):
            receiver.close()
