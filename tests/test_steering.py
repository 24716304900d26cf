"""Replies steer the call: each instruction, in JSON and in sipgate.io's XML, applied to an inbound call by a
real webhook on 127.0.0.1; the reply timeout, invalid replies, errors and late replies; the fallback of a
number with a SIP target."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls import gateway
from voxplane.services.events.models import Event
from voxplane.webhooks.v1 import webhooks_pb2 as wpb
from voxplane.webhooks.v1.webhooks_pb2 import PAYLOAD_FORMAT_SIPGATE

from .test_calls import S, wait_for
from .test_inbound import CALLER, inject, number
from .test_webhooks import eventually, keep_log, webhooks_of
from .webhook_receiver import Receiver, Reply

H = pb.HangupCause
pytestmark = pytest.mark.usefixtures("webhooks")
XML = "application/xml"
WAV = "https://media.example.com/welcome.wav"
SHOWN = "+14155550199"


def xml(instruction: str) -> Reply:
    return Reply(f'<?xml version="1.0" encoding="UTF-8"?><Response>{instruction}</Response>', XML)


def as_json(**reply: object) -> Reply:
    return Reply(json.dumps(reply))


def orders(network, ref: str, count: int, within: float = 5.0) -> list:  # type: ignore[no-untyped-def]
    """The first `count` orders call `ref` was given, once it was given that many."""
    deadline = time.monotonic() + within
    while len(given := network.orders_of(ref)) < count:
        assert time.monotonic() < deadline, f"call {ref} was given only {given}"
        time.sleep(0.02)
    return given


class Steered:
    """An inbound call to a number whose only route is the webhook `receiver`."""

    def __init__(self, tenant, fresh_e164, receiver: Receiver, digits: str = ""):  # type: ignore[no-untyped-def]
        self.e164 = number(tenant, fresh_e164(), ingress_info={"webhook": receiver.url()}).e164_number
        self.ref = inject(tenant, self.e164, digits=digits).call.ref
        self.tenant = tenant

    def becomes(self, status: int) -> pb.Call:
        with self.tenant.calls() as calls:
            return wait_for(calls, self.ref, status)


@pytest.fixture
def webhook():  # type: ignore[no-untyped-def]
    """`webhook(new_call, data)`: a receiver answering every NEW_CALL POST (the steering one, and the
    delivery for the record) with `new_call`, every DATA POST with `data`; closed after the test."""
    made: list[Receiver] = []

    def make(new_call: Reply | None = None, data: Reply | None = None, **by_type: Reply) -> Receiver:
        answers = {"call.new_call": new_call or Reply(), "call.data": data or Reply(), **by_type}
        made.append(Receiver(by_type=answers))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


# (reply in JSON, the same in sipgate XML, status, cause, parties added, the orders the network was given)
INSTRUCTIONS = {
    "dial": (
        as_json(action="dial", targets=[gateway.ANSWERS, "sip:bob@pbx.example.com"], caller_id=SHOWN),
        xml(f'<Dial callerId="{SHOWN}"><Number>{gateway.ANSWERS}</Number><Number>sip:bob@pbx.example.com</Number>'
            "</Dial>"),
        S.CALL_STATUS_IN_PROGRESS, H.HANGUP_CAUSE_UNSPECIFIED, [gateway.ANSWERS, "sip:bob@pbx.example.com"],
        [("dial", ((gateway.ANSWERS, "sip:bob@pbx.example.com"), SHOWN, 30))],
    ),
    "dial anonymously": (
        as_json(action="dial", targets=[gateway.ANSWERS], anonymous=True),
        xml(f'<Dial anonymous="true"><Number>{gateway.ANSWERS}</Number></Dial>'),
        S.CALL_STATUS_IN_PROGRESS, H.HANGUP_CAUSE_UNSPECIFIED, [gateway.ANSWERS],
        [("dial", ((gateway.ANSWERS,), "", 30))],
    ),
    "dial a busy number": (
        as_json(action="dial", targets=[gateway.BUSY]),
        xml(f"<Dial><Number>{gateway.BUSY}</Number></Dial>"),
        S.CALL_STATUS_BUSY, H.HANGUP_CAUSE_BUSY, [gateway.BUSY], [("dial", ((gateway.BUSY,), CALLER, 30))],
    ),
    "voicemail": (
        as_json(action="voicemail"), xml("<Dial><Voicemail/></Dial>"),
        S.CALL_STATUS_IN_PROGRESS, H.HANGUP_CAUSE_UNSPECIFIED, ["voicemail"], [("voicemail", ())],
    ),
    "reject busy": (
        as_json(action="reject", reason="busy"), xml('<Reject reason="busy"/>'),
        S.CALL_STATUS_BUSY, H.HANGUP_CAUSE_BUSY, [], [("reject", ("BUSY",))],
    ),
    "reject": (
        as_json(action="reject", reason="rejected"), xml('<Reject reason="rejected"/>'),
        S.CALL_STATUS_NO_ANSWER, H.HANGUP_CAUSE_NO_ANSWER, [], [("reject", ("NO_ANSWER",))],
    ),
    "play": (
        as_json(action="play", url=WAV), xml(f"<Play><Url>{WAV}</Url></Play>"),
        S.CALL_STATUS_IN_PROGRESS, H.HANGUP_CAUSE_UNSPECIFIED, [], [("answer", ()), ("play", (WAV,))],
    ),
    "hang up": (
        as_json(action="hangup"), xml("<Hangup/>"),
        S.CALL_STATUS_NO_ANSWER, H.HANGUP_CAUSE_NO_ANSWER, [], [("reject", ("NO_ANSWER",))],
    ),
}


@pytest.mark.parametrize("form", ["json", "sipgate xml"])
@pytest.mark.parametrize("name", list(INSTRUCTIONS))
def test_each_instruction_is_applied_to_the_call(tenant, network, fresh_e164, webhook, name, form):
    in_json, in_xml, status, cause, added, expected = INSTRUCTIONS[name]
    call = Steered(tenant, fresh_e164, webhook(in_json if form == "json" else in_xml))

    result = call.becomes(status)

    assert result.hangup_cause == cause
    assert [p.number for p in result.participants] == [CALLER, call.e164, *added]
    if name.startswith("dial"):
        assert result.caller_id == expected[0][1][1]
    assert orders(network, call.ref, len(expected)) == expected


@pytest.mark.parametrize("form", ["json", "sipgate xml"])
def test_a_gather_reports_the_digits_as_data_and_that_reply_steers_the_call(
    tenant, network, fresh_e164, webhook, form
):
    gather = (as_json(action="gather", max_digits=3, timeout_ms=2000, announcement=WAV) if form == "json"
              else xml(f'<Gather maxDigits="3" timeout="2000"><Play><Url>{WAV}</Url></Play></Gather>'))
    hangup = as_json(action="hangup") if form == "json" else xml("<Hangup/>")
    receiver = webhook(gather, hangup)
    call = Steered(tenant, fresh_e164, receiver, digits="1234")

    result = call.becomes(S.CALL_STATUS_COMPLETED)

    assert result.hangup_cause == H.HANGUP_CAUSE_NORMAL_CLEARING
    assert orders(network, call.ref, 3) == [("answer", ()), ("gather", (3, 2.0, WAV)), ("hangup", ())]
    assert {r.event["data"]["digits"] for r in receiver.of_type("call.data")} == {"123"}  # at most max_digits of what the caller pressed


def test_a_reply_that_gives_no_instruction_to_data_leaves_the_call_as_it_is(tenant, network, fresh_e164, webhook):
    receiver = webhook(as_json(action="gather", max_digits=1, timeout_ms=1000), Reply(""))
    call = Steered(tenant, fresh_e164, receiver, digits="5")
    call.becomes(S.CALL_STATUS_IN_PROGRESS)
    deadline = time.monotonic() + 5
    while not receiver.of_type("call.data"):
        assert time.monotonic() < deadline, "the DATA event was not posted"
        time.sleep(0.02)

    time.sleep(0.2)  # what a reply would have done by now, it has not: the call is unchanged
    assert call.becomes(S.CALL_STATUS_IN_PROGRESS).status == S.CALL_STATUS_IN_PROGRESS
    assert network.orders_of(call.ref) == [("answer", ()), ("gather", (1, 1.0, ""))]


def test_a_sipgate_endpoint_is_sent_sipgates_form_and_its_xml_reply_works(tenant, network, fresh_e164, webhook):
    receiver = webhook(newCall=xml('<Reject reason="busy"/>'))
    with webhooks_of(tenant) as webhooks:
        webhooks.update_webhook_endpoint(url=receiver.url(), enabled=True, payload_format=PAYLOAD_FORMAT_SIPGATE)
    call = Steered(tenant, fresh_e164, receiver)

    call.becomes(S.CALL_STATUS_BUSY)

    posted = receiver.of_type("newCall")[0].event
    assert (posted["event"], posted["direction"], posted["from"], posted["callId"]) == (
        "newCall", "in", CALLER.removeprefix("+"), call.ref
    )


FAILURES = {
    "an invalid JSON reply": as_json(action="teleport"),
    "JSON that is no object": Reply("[1, 2]"),
    "XML with a DTD": Reply('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><Response>&a;</Response>', XML),
    "an unknown XML instruction": xml("<Teleport/>"),
    "two instructions": xml("<Hangup/><Hangup/>"),
    "a bad dial target": as_json(action="dial", targets=["not a number"]),
    "an answer 500": Reply(json.dumps({"action": "voicemail"}), status=500),
    "an answer 404": Reply(status=404),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_steer_rejects_a_call_whose_only_route_is_the_webhook(tenant, network, fresh_e164, webhook, failure):
    call = Steered(tenant, fresh_e164, webhook(FAILURES[failure]))

    result = call.becomes(S.CALL_STATUS_FAILED)

    assert result.hangup_cause == H.HANGUP_CAUSE_CONGESTION
    assert network.orders_of(call.ref) == [("reject", ("CONGESTION",))]


def test_a_webhook_that_cannot_be_reached_rejects_the_call(tenant, network, fresh_e164, webhook):
    gone = webhook()
    gone.close()  # nothing listens at its port any more
    call = Steered(tenant, fresh_e164, gone)

    assert call.becomes(S.CALL_STATUS_FAILED).hangup_cause == H.HANGUP_CAUSE_CONGESTION


def test_a_reply_after_the_timeout_is_ignored(tenant, network, fresh_e164, webhook, environment):
    environment.set(VOXPLANE_STEERING_TIMEOUT="0.3")
    slow = webhook(Reply(json.dumps({"action": "dial", "targets": [gateway.ANSWERS]}), delay=1.0))
    call = Steered(tenant, fresh_e164, slow)

    assert call.becomes(S.CALL_STATUS_FAILED).hangup_cause == H.HANGUP_CAUSE_CONGESTION
    slow.wait_answered(1)  # the webhook has given its (late) reply
    time.sleep(0.2)

    assert call.becomes(S.CALL_STATUS_FAILED).hangup_cause == H.HANGUP_CAUSE_CONGESTION
    assert network.orders_of(call.ref) == [("reject", ("CONGESTION",))]  # no dial


def default_webhook(tenant, url: str, whitelist: list[str] | None = None) -> None:  # type: ignore[no-untyped-def]
    """The workspace's default URL for inbound calls (of the whitelisted numbers only, when given)."""
    with webhooks_of(tenant) as webhooks:
        webhooks.update_webhook_settings(incoming_url=url, whitelist=whitelist or [])


AOR = "sip:1001@pbx.example.com"


def test_the_default_webhook_steers_a_number_routed_to_a_sip_target(tenant, db, network, fresh_e164, webhook):
    receiver = webhook(as_json(action="reject", reason="busy"))
    default_webhook(tenant, receiver.url())
    e164 = number(tenant, fresh_e164(), aor_link=AOR).e164_number

    call = inject(tenant, e164).call

    assert call.webhook == ""  # its events go to the workspace's default
    with tenant.calls() as calls:
        assert wait_for(calls, call.ref, S.CALL_STATUS_BUSY).hangup_cause == H.HANGUP_CAUSE_BUSY
    assert receiver.of_type("call.new_call")


@pytest.mark.parametrize("failure", ["an answer 500", "an invalid JSON reply"])
def test_a_failed_steer_of_a_number_with_a_sip_target_rings_the_target(
    tenant, db, network, fresh_e164, webhook, failure
):
    default_webhook(tenant, webhook(FAILURES[failure]).url())
    e164 = number(tenant, fresh_e164(), forward_sip_to=AOR).e164_number

    call = inject(tenant, e164).call

    with tenant.calls() as calls:
        answered = wait_for(calls, call.ref, S.CALL_STATUS_IN_PROGRESS)
    assert [p.number for p in answered.participants] == [CALLER, e164, AOR]
    assert network.orders_of(call.ref) == [("dial", ((AOR,), CALLER, 30))]


def test_a_number_the_whitelist_leaves_out_is_not_steered(tenant, db, network, fresh_e164, webhook):
    receiver = webhook(as_json(action="reject", reason="busy"))
    default_webhook(tenant, receiver.url(), whitelist=["+14155550100"])
    e164 = number(tenant, fresh_e164(), aor_link=AOR).e164_number

    call = inject(tenant, e164).call

    with tenant.calls() as calls:
        wait_for(calls, call.ref, S.CALL_STATUS_IN_PROGRESS)
    assert network.orders_of(call.ref) == [("dial", ((AOR,), CALLER, 30))]
    assert receiver.requests == []


def events_of(db, ref: str) -> list[str]:  # type: ignore[no-untyped-def]
    query = select(Event.type).where(Event.resource_ref == ref).order_by(Event.sequence)
    return list(db.transaction(lambda s: s.scalars(query).all(), write=False))


def test_what_a_reply_changes_is_stored_as_the_calls_events(tenant, db, fresh_e164, webhook):
    played = Steered(tenant, fresh_e164, webhook(as_json(action="play", url=WAV)))
    gathered = Steered(tenant, fresh_e164, webhook(as_json(action="gather", max_digits=2, timeout_ms=1000),
                                                   as_json(action="hangup")), digits="7")

    gathered.becomes(S.CALL_STATUS_COMPLETED)
    deadline = time.monotonic() + 5
    while "PLAYING" not in events_of(db, played.ref):
        assert time.monotonic() < deadline, events_of(db, played.ref)
        time.sleep(0.02)

    assert events_of(db, played.ref) == ["NEW_CALL", "ANSWER", "PLAYING"]
    assert events_of(db, gathered.ref) == ["NEW_CALL", "ANSWER", "DATA", "HANGUP"]


# --- the outcome, on the event's delivery ----------------------------------------------------------


def steered_delivery(tenant, call_ref: str, event_type: str = "call.new_call") -> wpb.WebhookDelivery:  # type: ignore[no-untyped-def]
    """The delivery of call `call_ref`'s `event_type` event, once it shows what came of the steering."""

    def found() -> wpb.WebhookDelivery | None:
        page = webhooks_of(tenant).list_webhook_deliveries(filter={"resource_ref": call_ref})
        steered = [d for d in page.deliveries if d.event_type == event_type and d.HasField("steering")]
        return steered[0] if steered else None

    return eventually(found)  # type: ignore[return-value]


def test_a_steering_timeout_is_recorded_on_the_delivery(tenant, network, fresh_e164, webhook, environment):
    keep_log(tenant)
    environment.set(VOXPLANE_STEERING_TIMEOUT="0.3")
    call = Steered(tenant, fresh_e164, webhook(Reply(json.dumps({"action": "voicemail"}), delay=1.0)))
    call.becomes(S.CALL_STATUS_FAILED)

    steering = steered_delivery(tenant, call.ref).steering

    assert steering.result == wpb.STEERING_RESULT_TIMEOUT
    assert (steering.error, steering.instruction, steering.response_code) == ("no reply within 0.3 s", "", 0)
    waited = steering.outcome_time.ToDatetime() - steering.request_time.ToDatetime()
    assert 0.25 <= waited.total_seconds() < 1.0  # the timeout ran out, and the late reply was not waited for


def test_an_invalid_steering_reply_is_recorded_on_the_delivery(tenant, network, fresh_e164, webhook):
    keep_log(tenant)
    call = Steered(tenant, fresh_e164, webhook(FAILURES["an invalid JSON reply"]))
    call.becomes(S.CALL_STATUS_FAILED)

    delivery = steered_delivery(tenant, call.ref)

    assert delivery.steering.result == wpb.STEERING_RESULT_INVALID_REPLY
    assert "unknown action 'teleport'" in delivery.steering.error
    assert (delivery.steering.instruction, delivery.steering.response_code) == ("", 200)
    assert delivery.steering.request_time.seconds > 0


def test_an_error_answer_to_a_steering_post_is_recorded_on_the_delivery(tenant, network, fresh_e164, webhook):
    keep_log(tenant)
    call = Steered(tenant, fresh_e164, webhook(new_call=Reply(status=404)))
    call.becomes(S.CALL_STATUS_FAILED)

    delivery = steered_delivery(tenant, call.ref)

    assert delivery.steering.result == wpb.STEERING_RESULT_ERROR
    assert (delivery.steering.error, delivery.steering.response_code) == ("the webhook answered HTTP 404", 404)


def test_an_applied_steering_instruction_is_recorded_on_the_delivery(tenant, network, fresh_e164, webhook):
    keep_log(tenant)
    call = Steered(tenant, fresh_e164, webhook(xml('<Reject reason="busy"/>')))
    call.becomes(S.CALL_STATUS_BUSY)

    delivery = steered_delivery(tenant, call.ref)

    assert delivery.steering.result == wpb.STEERING_RESULT_APPLIED
    assert json.loads(delivery.steering.instruction) == {"action": "reject", "reason": "busy"}  # XML, shown as JSON
    assert (delivery.steering.error, delivery.steering.response_code) == ("", 200)
    answer_delivery = [d for d in webhooks_of(tenant).list_webhook_deliveries(filter={"resource_ref": call.ref}).deliveries
                       if d.event_type != "call.new_call"]
    assert not any(d.HasField("steering") for d in answer_delivery)  # only the event that steered shows it


def test_a_data_reply_that_gives_no_instruction_is_recorded_on_the_data_delivery(tenant, network, fresh_e164, webhook):
    keep_log(tenant)
    receiver = webhook(as_json(action="gather", max_digits=1, timeout_ms=1000), Reply(""))
    call = Steered(tenant, fresh_e164, receiver, digits="5")

    data = steered_delivery(tenant, call.ref, "call.data")
    new_call = steered_delivery(tenant, call.ref)

    assert data.steering.result == wpb.STEERING_RESULT_NO_INSTRUCTION
    assert new_call.steering.result == wpb.STEERING_RESULT_APPLIED
    assert json.loads(new_call.steering.instruction) == {"action": "gather", "max_digits": 1, "timeout_ms": 1000}
