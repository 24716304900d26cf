"""A webhook's reply to NEW_CALL or DATA, read as the one instruction that steers the call.

Two forms are understood, told apart by the Content-Type (else by the first character of the body):

- JSON: `{"action": "dial", "targets": ["+4915799912345"], "anonymous": false, "caller_id": "+492111234567"}`,
  `{"action": "voicemail"}`, `{"action": "reject", "reason": "busy" | "rejected"}`,
  `{"action": "play", "url": "https://…"}`,
  `{"action": "gather", "max_digits": 3, "timeout_ms": 10000, "announcement": "https://…"}`,
  `{"action": "hangup"}`;
- sipgate.io's XML: `<Response><Dial callerId="…" anonymous="true"><Number>…</Number></Dial></Response>`,
  `<Dial><Voicemail/></Dial>`, `<Reject reason="busy"/>`, `<Play><Url>…</Url></Play>`,
  `<Gather maxDigits="3" timeout="10000"><Play><Url>…</Url></Play></Gather>`, `<Hangup/>`.

An empty body (or `{}`, or an empty `<Response/>`) is no instruction. Anything else raises `InvalidReply`
saying what is wrong. XML is parsed by defusedxml: no DTD, no entities, no external references.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXml
from defusedxml import DefusedXmlException

from ..core import validation
from ..core.errors import InvalidArgument, Violations
from . import states
from .gateway import Gather

MAX_REPLY = 64 * 1024  # bytes: a reply is one instruction
MAX_TARGETS = 10
MAX_GATHER_DIGITS = 64
MAX_GATHER_TIMEOUT_MS = 60_000
# sipgate's reject reasons, and the hangup cause each ends the call with (sipgate's `noAnswer` is "the
# called party rejected the call").
REJECT_CAUSES = {"busy": "BUSY", "rejected": states.NO_ANSWER}


class InvalidReply(ValueError):
    """The reply is not one instruction this service understands; the message says why."""


@dataclass(frozen=True)
class Dial:
    targets: tuple[str, ...]  # E.164 or SIP URIs
    anonymous: bool = False
    caller_id: str = ""  # E.164; "": the call's own


@dataclass(frozen=True)
class Voicemail:
    pass


@dataclass(frozen=True)
class Reject:
    reason: str  # "busy" or "rejected"

    @property
    def cause(self) -> str:
        return REJECT_CAUSES[self.reason]


@dataclass(frozen=True)
class Play:
    url: str


@dataclass(frozen=True)
class Hangup:
    pass


Instruction = Dial | Voicemail | Reject | Play | Gather | Hangup  # a Gather is the gateway's order as it is


def parse(body: bytes, content_type: str = "") -> Instruction | None:
    """The instruction of a reply's `body`, or None when it gives none."""
    if len(body) > MAX_REPLY:
        raise InvalidReply(f"the reply is {len(body):,} bytes; at most {MAX_REPLY:,} are read")
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    kind = content_type.split(";")[0].strip().lower()
    if kind.endswith("xml") or (not kind.endswith("json") and text.startswith("<")):
        return _from_xml(text)
    return _from_json(text)


def as_json(instruction: Instruction) -> str:
    """`instruction` in the documented JSON reply form (whichever form it came in), defaults left out."""
    reply: dict[str, Any]
    match instruction:
        case Dial(targets=targets, anonymous=anonymous, caller_id=caller_id):
            reply = {"action": "dial", "targets": list(targets)}
            if anonymous:
                reply["anonymous"] = True
            if caller_id:
                reply["caller_id"] = caller_id
        case Voicemail():
            reply = {"action": "voicemail"}
        case Reject(reason=reason):
            reply = {"action": "reject", "reason": reason}
        case Play(url=url):
            reply = {"action": "play", "url": url}
        case Gather(max_digits=max_digits, timeout=timeout, announcement=announcement):
            reply = {"action": "gather", "max_digits": max_digits, "timeout_ms": round(timeout * 1000)}
            if announcement:
                reply["announcement"] = announcement
        case Hangup():
            reply = {"action": "hangup"}
    return json.dumps(reply, separators=(", ", ": "))


def _from_json(text: str) -> Instruction | None:
    try:
        reply = json.loads(text)
    except ValueError as error:
        raise InvalidReply(f"the reply is not JSON ({error})") from None
    if not isinstance(reply, dict):
        raise InvalidReply("a JSON reply must be an object with an `action`")
    if not reply:
        return None
    action = reply.get("action")
    if action == "dial":
        targets = reply.get("targets")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise InvalidReply("`targets` must be a list of numbers or SIP URIs")
        return _dial(targets, _bool(reply.get("anonymous", False), "anonymous"), _str(reply, "caller_id"))
    if action == "voicemail":
        return Voicemail()
    if action == "reject":
        return _reject(_str(reply, "reason") or "rejected")
    if action == "play":
        return Play(_url("url", _str(reply, "url")))
    if action == "gather":
        return _gather(reply.get("max_digits"), reply.get("timeout_ms"), _str(reply, "announcement"))
    if action == "hangup":
        return Hangup()
    raise InvalidReply(
        f"unknown action {str(action)[:40]!r}: one of dial, voicemail, reject, play, gather, hangup"
    )


def _from_xml(text: str) -> Instruction | None:
    try:
        root = SafeXml.fromstring(text, forbid_dtd=True)
    except (DefusedXmlException, SafeXml.ParseError) as error:
        raise InvalidReply(f"the reply is not XML this service reads ({error})") from None
    if root.tag != "Response":
        raise InvalidReply(f"an XML reply's root must be <Response>, got <{root.tag[:40]}>")
    if len(root) == 0:
        return None
    if len(root) > 1:
        raise InvalidReply("a <Response> holds one instruction")
    command = root[0]
    if command.tag == "Dial":
        if command.find("Voicemail") is not None:
            return Voicemail()
        numbers = [(n.text or "").strip() for n in command.findall("Number")]
        anonymous = command.get("anonymous", "false").strip().lower()
        if anonymous not in ("true", "false"):
            raise InvalidReply(f"<Dial anonymous> must be true or false, got {anonymous[:40]!r}")
        return _dial(numbers, anonymous == "true", command.get("callerId", "").strip())
    if command.tag == "Reject":
        return _reject(command.get("reason", "rejected").strip())
    if command.tag == "Play":
        return Play(_url("<Play><Url>", _xml_url(command)))
    if command.tag == "Gather":
        play = command.find("Play")
        announcement = _xml_url(play) if play is not None else ""
        return _gather(_xml_int(command, "maxDigits"), _xml_int(command, "timeout"), announcement)
    if command.tag == "Hangup":
        return Hangup()
    raise InvalidReply(
        f"unknown instruction <{command.tag[:40]}>: one of Dial, Reject, Play, Gather, Hangup"
    )


def _dial(targets: list[str], anonymous: bool, caller_id: str) -> Dial:
    if not 1 <= len(targets) <= MAX_TARGETS:
        raise InvalidReply(f"a dial needs 1 to {MAX_TARGETS} targets, got {len(targets)}")
    v = Violations()
    checked = []
    for i, target in enumerate(targets):
        field = f"targets[{i}]"
        target = target.strip()
        is_sip = target.lower().startswith(("sip:", "sips:"))
        checked.append((validation.sip_uri(v, field, target) if is_sip else validation.e164(v, field, target)) or "")
    checked_caller_id = (validation.e164(v, "caller_id", caller_id) or "") if caller_id else ""
    _raise_if_any(v)
    return Dial(tuple(checked), anonymous, checked_caller_id)


def _reject(reason: str) -> Reject:
    if reason not in REJECT_CAUSES:
        raise InvalidReply(f"a reject's reason must be busy or rejected, got {reason[:40]!r}")
    return Reject(reason)


def _gather(max_digits: Any, timeout_ms: Any, announcement: str) -> Gather:
    if not isinstance(max_digits, int) or isinstance(max_digits, bool) or not 1 <= max_digits <= MAX_GATHER_DIGITS:
        raise InvalidReply(f"a gather's max digits must be 1 to {MAX_GATHER_DIGITS}, got {str(max_digits)[:40]}")
    if (not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool)
            or not 0 <= timeout_ms <= MAX_GATHER_TIMEOUT_MS):
        raise InvalidReply(f"a gather's timeout must be 0 to {MAX_GATHER_TIMEOUT_MS} ms, got {str(timeout_ms)[:40]}")
    return Gather(max_digits, timeout_ms / 1000, _url("announcement", announcement) if announcement else "")


def _url(field: str, url: str) -> str:
    if not url:
        raise InvalidReply(f"{field} is required")
    v = Violations()
    checked = validation.http_url(v, field, url)
    _raise_if_any(v)
    return checked or ""


def _raise_if_any(v: Violations) -> None:
    """Violations as one InvalidReply: what a webhook sent is no caller's INVALID_ARGUMENT."""
    try:
        v.raise_if_any()
    except InvalidArgument as error:
        raise InvalidReply("; ".join(f"{x.field} {x.description}" for x in error.violations)) from None


def _str(reply: dict[str, Any], key: str) -> str:
    value = reply.get(key, "")
    if not isinstance(value, str):
        raise InvalidReply(f"`{key}` must be a string")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidReply(f"`{key}` must be true or false")
    return value


def _xml_url(element: Element) -> str:
    url = element.find("Url")
    return (url.text or "").strip() if url is not None else ""


def _xml_int(element: Element, name: str) -> int | str:
    value = element.get(name, "").strip()
    return int(value) if value.isdigit() else value
