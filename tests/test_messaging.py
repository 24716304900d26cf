"""Messaging over a real channel: segments, SendMessage's rules, scheduling and cancelling, delivery
through the simulated carrier and on-net across two workspaces, opt-outs, faxes, history, isolation.

The server's carrier is the simulated one: the recipient picks the outcome (services/messaging/carrier.py).
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from pypdf import PdfWriter
from sqlalchemy import select

from voxplane import FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from voxplane.messaging.v1 import messaging_pb2 as pb
from voxplane.services.core.auth import Role
from voxplane.services.messaging import carrier, segments
from voxplane.services.messaging.models import CarrierHandoff

S = pb.MessageStatus
DELIVERS = "+15005550001"


def owned_number(tenant, fresh_e164, **settings) -> str:  # type: ignore[no-untyped-def]
    with tenant.numbers() as numbers:
        return numbers.create_number(provider_ref="trunk-1", e164_number=fresh_e164(), settings=settings).e164_number


def wait_for(messaging, ref: str, status: int, within: float = 5.0) -> pb.Message:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        message = messaging.get_message(ref)
        if message.status == status:
            return message
        assert time.monotonic() < deadline, f"message stayed {S.Name(message.status)}, expected {S.Name(status)}"
        time.sleep(0.02)


def ts(when: datetime) -> str:
    """A time as the clients' keyword arguments take it (proto JSON)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def statuses(message: pb.Message) -> list[str]:
    return [S.Name(change.status).removeprefix("MESSAGE_STATUS_") for change in message.status_history]


# --- segments ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "encoding", "count"), [
    ("a" * 160, segments.GSM7, 1),
    ("a" * 161, segments.GSM7, 2),
    ("a" * 306, segments.GSM7, 2),
    ("a" * 307, segments.GSM7, 3),
    ("€" * 80, segments.GSM7, 1),  # 160 septets
    ("€" * 81, segments.GSM7, 2),
    ("]" * 153, segments.GSM7, 3),  # 306 septets, but no ']' is split across two parts
    ("a" * 152 + "€" + "a" * 152, segments.GSM7, 3),  # an extension character on the boundary
    ("Hello\r\nWorld", segments.GSM7, 1),  # CRLF: two GSM characters
    ("{[~^|\\]}", segments.GSM7, 1),
    ("ÄÖÑÜ§¿àèéùìò", segments.GSM7, 1),
    ("e\u0301", segments.UCS2, 1),  # a decomposed accent: the combining mark is not GSM
    ("“smart quotes”", segments.UCS2, 1),  # never substituted by straight ones
    ("a" * 69 + "’", segments.UCS2, 1),
    ("a" * 70 + "’", segments.UCS2, 2),
    ("a" * 134, segments.GSM7, 1 if 134 <= 160 else 2),
    ("ü" * 70, segments.GSM7, 1),
    ("😀" * 35, segments.UCS2, 1),  # 70 UTF-16 units
    ("😀" * 36, segments.UCS2, 2),
    ("a" * 66 + "😀" + "a" * 66, segments.UCS2, 3),  # 134 units, the emoji straddling 67: it starts part 2
    ("ж" * 134, segments.UCS2, 2),
    ("ж" * 135, segments.UCS2, 3),
])
def test_segment_table(body: str, encoding: str, count: int):
    assert (segments.count(body).encoding, segments.count(body).count) == (encoding, count)


def test_the_alphabet_comes_from_the_codec_tables():
    assert "@" in segments.GSM_BASIC and "€" in segments.GSM_EXTENSION and "\x1b" not in segments.GSM_ALL
    assert len(segments.GSM_BASIC) == 127 and len(segments.GSM_EXTENSION) == 10


# --- sending -----------------------------------------------------------------------------------

def test_an_sms_is_queued_sent_and_delivered_off_net(tenant, fresh_e164, db):
    source = owned_number(tenant, fresh_e164)
    with tenant.messaging() as messaging:
        sent = messaging.send_message(source=source, destination="+1 500-555-0001", body="Hi “there”")
        assert (sent.status, sent.encoding, sent.num_segments) == (S.MESSAGE_STATUS_QUEUED, pb.ENCODING_UCS2, 1)
        assert sent.destination == DELIVERS
        done = wait_for(messaging, sent.ref, S.MESSAGE_STATUS_DELIVERED)
        assert statuses(done) == ["QUEUED", "SENDING", "SENT", "DELIVERED"]
        assert messaging.send_message(source=source, destination=DELIVERS, body="x", request_id="r1").ref == \
            messaging.send_message(source=source, destination=DELIVERS, body="x", request_id="r1").ref
    offers = db.transaction(lambda s: s.scalar(select(CarrierHandoff.offers).where(CarrierHandoff.message_ref == sent.ref)),
                            write=False)
    assert offers == 1


@pytest.mark.parametrize(("destination", "status"), [
    (carrier.UNDELIVERED_NUMBER, S.MESSAGE_STATUS_UNDELIVERED),
    (carrier.REFUSED_NUMBER, S.MESSAGE_STATUS_FAILED),
])
def test_the_simulated_carriers_test_numbers(tenant, fresh_e164, destination, status):
    with tenant.messaging() as messaging:
        sent = messaging.send_message(source="Voxplane", destination=destination, body="test")
        done = wait_for(messaging, sent.ref, status)
        assert done.failure_reason


def test_bad_senders_recipients_and_bodies_are_invalid_argument_naming_the_field(tenant, other_tenant, fresh_e164):
    theirs = owned_number(other_tenant, fresh_e164)
    with tenant.messaging() as messaging:
        for fields, field in [
            ({"source": theirs}, "source"),
            ({"source": "TooLongSenderID"}, "source"),
            ({"source": "12345!"}, "source"),
            ({"destination": "12"}, "destination"),
            ({"body": ""}, "body"),
            ({"body": "a" * 1601}, "body"),
            ({"webhook": "ftp://x"}, "webhook"),
        ]:
            request = {"source": "Shop", "destination": DELIVERS, "body": "hi", **fields}
            with pytest.raises(InvalidArgumentError) as raised:
                messaging.send_message(**request)
            assert field in {v.field for v in raised.value.field_violations}, fields


def test_schedule_bounds_say_which_and_by_how_much(tenant):
    now = datetime.now(timezone.utc)
    with tenant.messaging() as messaging:
        with pytest.raises(InvalidArgumentError, match="at least 60 s ahead; it is 30 s short"):
            messaging.send_message(source="Shop", destination=DELIVERS, body="x", send_time=ts(now + timedelta(seconds=30)))
        with pytest.raises(InvalidArgumentError, match="at most 30 days ahead; it is 48.0 h beyond"):
            messaging.send_message(source="Shop", destination=DELIVERS, body="x", send_time=ts(now + timedelta(days=32)))
        ok = messaging.send_message(source="Shop", destination=DELIVERS, body="x", send_time=ts(now + timedelta(minutes=5)))
        assert ok.status == S.MESSAGE_STATUS_SCHEDULED and ok.send_time.ToDatetime(timezone.utc) > now


def test_cancel_only_while_scheduled(tenant, other_tenant):
    now = datetime.now(timezone.utc)
    with tenant.messaging() as messaging:
        later = messaging.send_message(source="Shop", destination=DELIVERS, body="x", send_time=ts(now + timedelta(hours=1)))
        with other_tenant.messaging() as theirs, pytest.raises(NotFoundError):
            theirs.cancel_message(later.ref)
        canceled = messaging.cancel_message(later.ref)
        assert canceled.status == S.MESSAGE_STATUS_CANCELED and statuses(canceled) == ["SCHEDULED", "CANCELED"]
        with pytest.raises(FailedPreconditionError, match="is CANCELED; only a SCHEDULED"):
            messaging.cancel_message(later.ref)
        now_sent = messaging.send_message(source="Shop", destination=DELIVERS, body="x")
        wait_for(messaging, now_sent.ref, S.MESSAGE_STATUS_DELIVERED)
        with pytest.raises(FailedPreconditionError, match="is DELIVERED"):
            messaging.cancel_message(now_sent.ref)


def test_on_net_delivery_across_two_workspaces_and_opt_out(tenant, other_tenant, fresh_e164):
    ours = owned_number(tenant, fresh_e164)
    theirs = owned_number(other_tenant, fresh_e164, messaging_webhook="https://example.com/sms")
    with tenant.messaging() as messaging, other_tenant.messaging() as receiving:
        sent = messaging.send_message(source=ours, destination=theirs, body="Hello neighbour")
        assert statuses(wait_for(messaging, sent.ref, S.MESSAGE_STATUS_DELIVERED)) == \
            ["QUEUED", "SENDING", "SENT", "DELIVERED"]
        inbox = receiving.list_messages(filter={"direction": "DIRECTION_INBOUND"}).messages
        assert [(m.source, m.destination, m.body, m.status, m.webhook) for m in inbox] == \
            [(ours, theirs, "Hello neighbour", S.MESSAGE_STATUS_RECEIVED, "https://example.com/sms")]
        assert not messaging.list_messages(filter={"direction": "DIRECTION_INBOUND"}).messages
        # They text STOP back: no more messages from our number to theirs, until START.
        stop = receiving.send_message(source=theirs, destination=ours, body="stop")
        wait_for(receiving, stop.ref, S.MESSAGE_STATUS_DELIVERED)
        with pytest.raises(FailedPreconditionError, match="opted out"):
            messaging.send_message(source=ours, destination=theirs, body="still there?")
        start = receiving.send_message(source=theirs, destination=ours, body="START")
        wait_for(receiving, start.ref, S.MESSAGE_STATUS_DELIVERED)
        assert messaging.send_message(source=ours, destination=theirs, body="welcome back").status == \
            S.MESSAGE_STATUS_QUEUED


def test_help_gets_the_workspaces_reply(tenant, fresh_e164):
    ours = owned_number(tenant, fresh_e164)
    with tenant.messaging() as messaging, tenant.messaging(Role.OPERATOR) as operator:
        messaging.update_messaging_settings(help_reply="Acme: call 0800 123 for help.")
        assert messaging.get_messaging_settings().help_reply == "Acme: call 0800 123 for help."
        received = operator.simulate_inbound_message(source=DELIVERS, destination=ours, body=" Help! ")
        assert received.status == S.MESSAGE_STATUS_RECEIVED
        deadline = time.monotonic() + 5
        while True:
            replies = messaging.list_messages(filter={"direction": "DIRECTION_OUTBOUND", "number": DELIVERS}).messages
            if replies and replies[0].status == S.MESSAGE_STATUS_DELIVERED:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (replies[0].source, replies[0].body) == (ours, "Acme: call 0800 123 for help.")
    with tenant.messaging() as messaging, pytest.raises(PermissionDeniedError):
        messaging.simulate_inbound_message(source=DELIVERS, destination=ours, body="x")


# --- history -----------------------------------------------------------------------------------

def test_history_filters_pages_delete_and_export(tenant, other_tenant):
    with tenant.messaging() as messaging:
        refs = [messaging.send_message(source="Shop", destination=DELIVERS, body=f"n{i}").ref for i in range(5)]
        for ref in refs:
            wait_for(messaging, ref, S.MESSAGE_STATUS_DELIVERED)
        page = messaging.list_messages(page_size=2, filter={"number": DELIVERS, "type": "MESSAGE_TYPE_SMS"})
        assert [m.ref for m in page.messages] == refs[::-1][:2] and page.next_page_token
        assert [m.ref for m in messaging.iter_messages(filter={"number": DELIVERS})][:5] == refs[::-1]
        with other_tenant.messaging() as theirs:
            assert not theirs.list_messages().messages
            with pytest.raises(NotFoundError):
                theirs.get_message(refs[0])
            with pytest.raises(NotFoundError):
                theirs.delete_messages(refs=refs[:1])
        messaging.delete_messages(refs=refs[:2])
        with pytest.raises(NotFoundError):
            messaging.get_message(refs[0])
        later = messaging.send_message(source="Shop", destination=DELIVERS, body="x",
                                       send_time=ts(datetime.now(timezone.utc) + timedelta(hours=1)))
        with pytest.raises(FailedPreconditionError, match="SCHEDULED"):
            messaging.delete_messages(refs=[later.ref])
        with pytest.raises(InvalidArgumentError):
            messaging.list_messages(filter={"number": "nope"})
        chunks = b"".join(c.data for c in messaging._rpc(_EXPORT)(pb.ExportMessagesRequest(),
                                                                     metadata=messaging._metadata))
        lines = chunks.decode().splitlines()
        assert lines[0].startswith("ref,type,direction,status") and len(lines) == 1 + 4


from voxplane._client import Method  # noqa: E402

_EXPORT = Method("ExportMessages", pb.ExportMessagesRequest)


# --- faxes -------------------------------------------------------------------------------------

def pdf_of(pages: int, password: str | None = None) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_faxlines_and_a_fax_sent_with_retries(tenant, other_tenant, fresh_e164, environment):
    number = owned_number(tenant, fresh_e164)
    with tenant.messaging() as messaging:
        line = messaging.create_faxline(number=number, alias="Office", tagline="ACME Ltd")
        assert (line.number, line.can_send, line.can_receive) == (number, True, True)
        with pytest.raises(InvalidArgumentError):
            messaging.create_faxline(number=owned_number(other_tenant, fresh_e164))
        fax = messaging.send_fax(pdf_of(3), faxline_ref=line.ref, destination=DELIVERS, filename="offer.pdf")
        assert (fax.status, fax.page_count, fax.filename, fax.source) == (S.MESSAGE_STATUS_PENDING, 3, "offer.pdf",
                                                                          number)
        wait_for(messaging, fax.ref, S.MESSAGE_STATUS_SENT)
        assert messaging.get_fax(fax.ref).attempts == 1
        busy = messaging.send_fax(pdf_of(1), faxline_ref=line.ref, destination=carrier.SLOW_NUMBER)
        assert busy.status == S.MESSAGE_STATUS_PENDING
        with other_tenant.messaging() as theirs:
            with pytest.raises(NotFoundError):
                theirs.get_fax(fax.ref)
            with pytest.raises(NotFoundError):
                theirs.get_faxline(line.ref)
            with pytest.raises(NotFoundError):
                theirs.send_fax(pdf_of(1), faxline_ref=line.ref, destination=DELIVERS)
        off = messaging.update_faxline(ref=line.ref, can_send=False, update_mask="canSend")
        assert off.can_send is False
        with pytest.raises(FailedPreconditionError, match="cannot send"):
            messaging.send_fax(pdf_of(1), faxline_ref=line.ref, destination=DELIVERS)
        assert [f.ref for f in messaging.list_faxlines().faxlines] == [line.ref]
        messaging.delete_faxline(line.ref)
        with pytest.raises(NotFoundError):
            messaging.get_faxline(line.ref)


@pytest.mark.parametrize(("pdf", "problem"), [
    (b"%PDF-1.4 not really", "not a readable PDF"),
    (b"", "no PDF"),
    (pdf_of(1, password="secret"), "password-protected"),
    (pdf_of(201), "1 to 200 pages, it has 201"),
])
def test_pdfs_that_cannot_be_faxed_are_invalid_argument(tenant, fresh_e164, pdf, problem):
    number = owned_number(tenant, fresh_e164)
    with tenant.messaging() as messaging:
        line = messaging.create_faxline(number=number)
        with pytest.raises(InvalidArgumentError, match=problem):
            messaging.send_fax(pdf, faxline_ref=line.ref, destination=DELIVERS)


def test_a_pdf_over_20_mb_and_a_chunk_over_1_mb_are_refused(tenant, fresh_e164):
    number = owned_number(tenant, fresh_e164)
    with tenant.messaging() as messaging:
        line = messaging.create_faxline(number=number)
        with pytest.raises(InvalidArgumentError, match="at most 20 MB"):
            messaging.send_fax(b"%PDF" + b"\0" * (21 * 1024 * 1024), faxline_ref=line.ref, destination=DELIVERS)
        oversized = iter([pb.SendFaxRequest(header=pb.FaxHeader(faxline_ref=line.ref, destination=DELIVERS),
                                            chunk=b"x" * (1024 * 1024 + 1))])
        with pytest.raises(InvalidArgumentError, match="1,048,576 bytes"):
            import grpc

            from voxplane._errors import from_rpc_error
            try:
                messaging._rpc(Method("SendFax", pb.SendFaxRequest))(oversized, metadata=messaging._metadata)
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None


def test_the_numbers_messaging_webhook_is_set_and_cleared(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        number = numbers.create_number(provider_ref="p", e164_number=fresh_e164(),
                                       settings={"messaging_webhook": "https://example.com/in"})
        assert number.messaging_webhook == "https://example.com/in"
        with pytest.raises(InvalidArgumentError):
            numbers.update_number(ref=number.ref, settings={"messaging_webhook": "nope"})
        cleared = numbers.update_number(ref=number.ref, update_mask="settings.messagingWebhook")
        assert cleared.messaging_webhook == ""
        assert numbers.get_messaging_route(number.e164_number).workspace_ref == tenant.ref


# --- events ------------------------------------------------------------------------------------

def test_every_status_change_is_an_event_streamed_in_order_and_resumable(tenant, other_tenant, db):
    with tenant.messaging() as messaging:
        sent = messaging.send_message(source="Shop", destination=DELIVERS, body="watch me")
        with messaging.watch_message_events(sent.ref, heartbeat_interval=1) as stream:
            seen = []
            for response in stream:
                if response.HasField("event"):
                    seen.append(response)
                    if response.event.type == pb.MESSAGE_EVENT_TYPE_DELIVERED:
                        break
        events = [r.event for r in seen]
        assert [pb.MessageEventType.Name(e.type).removeprefix("MESSAGE_EVENT_TYPE_") for e in events] == \
            ["QUEUED", "SENDING", "SENT", "DELIVERED"]
        assert [e.sequence for e in events] == [1, 2, 3, 4]
        assert {(e.message_ref, e.source, e.destination, e.message_type, e.direction) for e in events} == \
            {(sent.ref, "Shop", DELIVERS, pb.MESSAGE_TYPE_SMS, pb.DIRECTION_OUTBOUND)}
        with messaging.watch_message_events(sent.ref, cursor=seen[1].cursor, heartbeat_interval=1) as resumed:
            after = []
            for response in resumed:
                if response.HasField("heartbeat"):
                    break
                after.append(response.event.event_id)
        assert after == [events[2].event_id, events[3].event_id]
        with other_tenant.messaging() as theirs, pytest.raises(NotFoundError):
            next(iter(theirs.watch_message_events(sent.ref)))
    # What the Webhooks dispatcher reads: the topic, the message's webhook and direction, a proto-JSON payload.
    from voxplane.services.events.models import Event
    rows = db.transaction(lambda s: list(s.execute(select(Event.topic, Event.direction, Event.webhook, Event.payload)
                                                   .where(Event.resource_ref == sent.ref).order_by(Event.id))),
                          write=False)
    assert rows[0] == ("message", "OUTBOUND", None, {
        "status": "MESSAGE_STATUS_QUEUED", "messageType": "MESSAGE_TYPE_SMS", "direction": "DIRECTION_OUTBOUND",
        "source": "Shop", "destination": DELIVERS})


def test_grpcurl_sends_an_sms(server, tenant, fresh_e164):
    from .test_grpcurl import grpcurl

    source = owned_number(tenant, fresh_e164)
    sent = grpcurl(server.address, "voxplane.messaging.v1.Messaging/SendMessage", key=tenant.keys[Role.MEMBER],
                   data={"source": source, "destination": DELIVERS, "body": "Hello from grpcurl"})
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert (answer["status"], answer["encoding"], answer["num_segments"]) == ("MESSAGE_STATUS_QUEUED", "ENCODING_GSM7", 1), answer
    refused = grpcurl(server.address, "voxplane.messaging.v1.Messaging/SendMessage", key=tenant.keys[Role.MEMBER],
                      data={"source": source, "destination": DELIVERS, "body": "x",
                            "send_time": "2020-01-01T00:00:00Z"})
    assert refused.returncode != 0 and "InvalidArgument" in refused.stderr and "send_time" in refused.stderr
