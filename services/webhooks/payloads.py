"""The bodies of deliveries, in an endpoint's payload format.

STANDARD is Standard Webhooks' shape: `{"type": "call.answer", "timestamp": <network time>, "data":
<the event>}`, where `data` is the event message in proto JSON (for calls, a CallEvent that
`json_format.ParseDict` reads back). SIPGATE is sipgate.io's: form-encoded, its event names (newCall,
answer, hangup, dtmf) and field names, so a handler written for sipgate.io parses it. sipgate.io has
no name for the other events (ringing, mute, hold, recording…): a SIPGATE endpoint is not sent them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from ..events.models import Event

STANDARD = "STANDARD"
SIPGATE = "SIPGATE"
FORMATS = (STANDARD, SIPGATE)

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"

SIPGATE_EVENTS = {"NEW_CALL": "newCall", "ANSWER": "answer", "HANGUP": "hangup", "DATA": "dtmf"}
SIPGATE_CAUSES = {
    "NORMAL_CLEARING": "normalClearing", "BUSY": "busy", "CANCEL": "cancel", "NO_ANSWER": "noAnswer",
    "CONGESTION": "congestion", "NOT_FOUND": "notFound", "FORWARDED": "forwarded",
    # sipgate.io has no cause for a call cut by a restart of the Calls service: it could not be reached.
    "SERVICE_RESTART": "congestion",
}


@dataclass(frozen=True)
class Body:
    text: str
    content_type: str


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as proto JSON writes Timestamps."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def event_type(event: Event) -> str:
    """`call.answer`: the topic and the type, as WebhookDelivery.event_type and the body's `type`."""
    return f"{event.topic}.{event.type.lower()}"


def event_data(event: Event) -> dict[str, Any]:
    """The event message in proto JSON: the stored payload with the fields the row holds itself."""
    prefix = f"{event.topic.upper()}_EVENT_TYPE_"
    return {
        "eventId": event.ref,
        f"{event.topic}Ref": event.resource_ref,
        "sequence": str(event.sequence),  # proto JSON writes int64 as a string
        "type": prefix + event.type,
        "networkTime": iso(event.network_time),
        **event.payload,
    }


def standard(event: Event) -> Body:
    document = {"type": event_type(event), "timestamp": iso(event.network_time), "data": event_data(event)}
    return Body(json.dumps(document, separators=(",", ":")), JSON_TYPE)


def _sipgate_number(party: str) -> str:
    """sipgate.io writes numbers without the plus (`492111234567`), and `anonymous` for none."""
    if not party:
        return "anonymous"
    return party[1:] if party.startswith("+") else party


def _unprefixed(value: str, prefix: str) -> str:
    return value[len(prefix):] if value.startswith(prefix) else value


def sipgate(event: Event) -> Body | None:
    """sipgate.io's form for the four events it has; None for the others."""
    name = SIPGATE_EVENTS.get(event.type)
    if name is None:
        return None
    data = event.payload
    fields: list[tuple[str, str]] = [("event", name), ("callId", event.resource_ref)]
    if name != "dtmf":
        inbound = event.direction == "INBOUND"
        source, destination = data.get("source", ""), data.get("destination", "")
        fields += [
            ("direction", "in" if inbound else "out"),
            ("from", _sipgate_number(source)),
            ("to", _sipgate_number(destination)),
            ("xcid", event.resource_ref),
        ]
        # sipgate's `user`: the calling user of an outbound call, the called one of an inbound call
        # (our agent refs and SIP URIs; an E.164 number is no user).
        user = destination if inbound else source
        if user and not user.startswith("+"):
            fields.append(("user[]", user))
    fields.append(("originalCallId", event.resource_ref))
    if name in ("answer", "hangup"):
        fields.append(("answeringNumber", _sipgate_number(data.get("destination", ""))))
    if name == "hangup":
        cause = _unprefixed(data.get("hangupCause", ""), "HANGUP_CAUSE_")
        fields.append(("cause", SIPGATE_CAUSES.get(cause, "normalClearing")))
    if name == "dtmf":
        fields.append(("dtmf", data.get("digits", "")))
    return Body(urlencode(fields), FORM_TYPE)


def render(event: Event, payload_format: str) -> Body | None:
    """The body of `event` for an endpoint of `payload_format`; None when that format has no such event."""
    return sipgate(event) if payload_format == SIPGATE else standard(event)
