"""The rules of sending an SMS: what SendMessage accepts, when it is due, the opt-out list, how accepted
messages are stored (many to a transaction), and cancelling one that waits for its time.

Also the arrival of an inbound SMS (on-net or from the carrier): stored RECEIVED in the number's
workspace, where STOP / START / HELP keywords change the opt-out list or ask for the HELP reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..core import ratelimits, validation
from ..core.auth import Caller
from ..core.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from ..core.resources import get_owned
from ..events import outbox
from ..events.outbox import NewEvent
from ..persistence.base import new_ref, table_of, utcnow
from ..persistence.tenancy import Workspace
from . import events, segments, states
from .models import MAX_BODY, Message, MessagingSettings, OptOut, StatusChange

MIN_AHEAD = timedelta(seconds=60)
MAX_AHEAD = timedelta(days=30)
MAX_SENDER_ID = 11
_SENDER_ID = re.compile(r"[A-Za-z0-9 ]{1,11}")
DEFAULT_HELP_REPLY = "Reply STOP to stop receiving messages from this number, START to receive them again."

# The usual keyword variants (those carriers honour on their own, as Twilio lists them).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "YES", "UNSTOP", "OPTIN"})
HELP_WORDS = frozenset({"HELP", "INFO"})


@dataclass(frozen=True)
class NewMessage:
    """A SendMessage request, checked: the sender is a number (still to be checked with Numbers) or a
    sender ID."""

    source: str
    source_is_number: bool
    destination: str
    body: str
    send_time: datetime | None
    webhook: str | None
    request_id: str | None


def _human(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def checked_send_time(v: Violations, field: str, send_time: datetime | None, now: datetime) -> datetime | None:
    """`send_time` if it is 60 s to 30 days ahead; else a violation naming the bound and by how much."""
    if send_time is None:
        return None
    ahead = send_time - now
    if ahead < MIN_AHEAD:
        v.add(field, f"must be at least 60 s ahead; it is {_human(MIN_AHEAD - ahead)} short of that"
              + (f" ({_human(ahead)} in the past)" if ahead.total_seconds() < 0 else ""))
    elif ahead > MAX_AHEAD:
        v.add(field, f"must be at most 30 days ahead; it is {_human(ahead - MAX_AHEAD)} beyond that")
    return send_time


def checked_body(v: Violations, field: str, body: str) -> str:
    if not body:
        v.add(field, "is required")
    elif len(body) > MAX_BODY:
        v.add(field, f"must be at most {MAX_BODY:,} characters, got {len(body):,}")
    return body


def checked_new_message(
    source: str, destination: str, body: str, send_time: datetime | None, webhook: str, request_id: str,
    now: datetime,
) -> NewMessage:
    v = Violations()
    source = source.strip()
    is_number = source.startswith("+") or source.replace(" ", "").isdigit()
    if is_number:
        checked_source = validation.e164(v, "source", source) or ""
    elif not source:
        v.add("source", "is required")
        checked_source = ""
    elif not _SENDER_ID.fullmatch(source) or not any(c.isalpha() for c in source):
        v.add("source", f"{source!r} is neither an E.164 number nor an alphanumeric sender ID (1 to "
              f"{MAX_SENDER_ID} letters, digits and spaces, at least one letter)")
        checked_source = ""
    else:
        checked_source = source
    checked_destination = validation.e164(v, "destination", destination) or ""
    checked_body(v, "body", body)
    due = checked_send_time(v, "send_time", send_time, now)
    hook = validation.http_url(v, "webhook", webhook) if webhook.strip() else None
    rid = validation.request_id(v, request_id)
    v.raise_if_any()
    return NewMessage(checked_source, is_number, checked_destination, body, due, hook, rid)


def new_message_row(caller_workspace_id: int, new: NewMessage, now: datetime) -> tuple[Message, NewEvent]:
    """The row of an accepted SMS, QUEUED (due now) or SCHEDULED (due at its time), and its first event."""
    counted = segments.count(new.body)
    message = Message(
        ref=new_ref(), workspace_id=caller_workspace_id, type="SMS", direction="OUTBOUND", source=new.source,
        destination=new.destination, body=new.body, encoding=counted.encoding, num_segments=counted.count,
        failure_reason="", webhook=new.webhook, send_time=new.send_time, due_time=new.send_time or now,
        attempts=0, event_sequence=0, request_id=new.request_id, create_time=now, version=1,
        faxline_ref="", filename="", page_count=0, size_bytes=0, fax_failure="",
    )
    return message, states.record(message, "SCHEDULED" if new.send_time else "QUEUED", now)


@dataclass(frozen=True)
class Accepted:
    """One SendMessage to store: the caller's workspace and the message."""

    workspace_id: int
    new: NewMessage


def opted_out(recipient: str, sender: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{recipient} opted out of messages from {sender} (they texted STOP); they must text START to receive again."
    )


@dataclass(frozen=True)
class Change:
    status: str
    time: datetime


@dataclass(frozen=True)
class Stored:
    """An SMS just stored by insert_messages: what a Message row has, without the ORM's cost (a request
    on SendMessage's hot path would spend more on building one than on the rest of its work)."""

    id: int
    ref: str
    workspace_id: int
    source: str
    destination: str
    body: str
    encoding: str
    num_segments: int
    status: str
    webhook: str | None
    send_time: datetime | None
    create_time: datetime
    changes: tuple[Change, ...]
    type: str = "SMS"
    direction: str = "OUTBOUND"
    failure_reason: str = ""
    event_sequence: int = 1
    version: int = 1

    @property
    def update_time(self) -> datetime:
        return self.create_time

    @property
    def etag(self) -> str:
        return f"{self.ref}-{self.version}"


def _stored(accepted: Accepted, now: datetime) -> Stored:
    new = accepted.new
    counted = segments.count(new.body)
    status = "SCHEDULED" if new.send_time else "QUEUED"
    return Stored(
        id=0, ref=new_ref(), workspace_id=accepted.workspace_id, source=new.source, destination=new.destination,
        body=new.body, encoding=counted.encoding, num_segments=counted.count, status=status, webhook=new.webhook,
        send_time=new.send_time, create_time=now, changes=(Change(status, now),),
    )


def _row(m: Stored, new: NewMessage, now: datetime) -> dict[str, object]:
    """`m`'s row of the messages table: every column, for one executemany."""
    return {
        "ref": m.ref, "workspace_id": m.workspace_id, "type": m.type, "direction": m.direction, "source": m.source,
        "destination": m.destination, "body": m.body, "encoding": m.encoding, "num_segments": m.num_segments,
        "status": m.status, "failure_reason": "", "webhook": m.webhook, "send_time": m.send_time,
        "due_time": m.send_time or now, "claimed_by": None, "attempts": 0, "event_sequence": m.event_sequence,
        "faxline_ref": "", "filename": "", "page_count": 0, "size_bytes": 0, "fax_failure": "", "create_time": now,
        "update_time": now, "version": m.version, "request_id": new.request_id,
    }


_MESSAGES = table_of(Message)
_CHANGES = table_of(StatusChange)
_INSERT_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)


def insert_messages(session: Session, items: Sequence[Accepted]) -> list[Stored | Exception]:
    """Stores a batch of accepted SMS in one transaction: each as Stored, or the error that refused it
    (the recipient opted out; over the workspace's limit; a request_id already used, as IntegrityError). When one of the batch breaks a
    unique key, the others are stored one by one, so that only that one fails."""
    try:
        with session.begin_nested():
            return _insert_messages(session, items)
    except IntegrityError:
        outcomes: list[Stored | Exception] = []
        for item in items:
            try:
                with session.begin_nested():
                    outcomes += _insert_messages(session, [item])
            except IntegrityError as error:
                outcomes.append(error)
        return outcomes


def _insert_messages(session: Session, items: Sequence[Accepted]) -> list[Stored | Exception]:
    """Five statements for the batch: the opt-outs, the workspaces' message counts (a message over its
    workspace's limit is refused; a workspace's overrides not read in a while are read first), the
    messages, their first status changes, their events."""
    now = utcnow()
    pairs = {(a.workspace_id, a.new.source, a.new.destination) for a in items}
    blocked = set(session.execute(
        select(OptOut.workspace_id, OptOut.sender, OptOut.recipient)
        .where(tuple_(OptOut.workspace_id, OptOut.sender, OptOut.recipient).in_(pairs))
    ))
    taken = [a for a in items if (a.workspace_id, a.new.source, a.new.destination) not in blocked]
    refusals = ratelimits.take_created(session, ratelimits.MESSAGES, [a.workspace_id for a in taken])
    over = {id(a): refused for a, refused in zip(taken, refusals, strict=True) if refused}
    taken = [a for a in taken if id(a) not in over]
    waiting = [_stored(accepted, now) for accepted in taken]
    rows = [_row(m, accepted.new, now) for m, accepted in zip(waiting, taken, strict=True)]
    ids = list(session.execute(_INSERT_MESSAGES, rows).scalars()) if rows else []
    stored = [replace(m, id=i) for m, i in zip(waiting, ids, strict=True)]
    if stored:
        session.execute(insert(_CHANGES), [{"message_id": m.id, "status": m.status, "time": now} for m in stored])
        outbox.append(session, [events.event(m, now) for m in stored])
    outcomes: list[Stored | Exception] = []
    made = iter(stored)
    for accepted in items:
        new = accepted.new
        blocked_here = (accepted.workspace_id, new.source, new.destination) in blocked
        if blocked_here:
            outcomes.append(opted_out(new.destination, new.source))
        else:
            outcomes.append(over.get(id(accepted)) or next(made))
    return outcomes


def earlier_message(session: Session, workspace_id: int, request_id: str | None) -> Message | None:
    if not request_id:
        return None
    return session.scalar(select(Message).where(Message.workspace_id == workspace_id, Message.request_id == request_id))


def cancel(session: Session, caller: Caller, ref: str) -> Message:
    """CANCELED, if it still waits for its time."""
    message = get_owned(session, Message, caller, ref)
    if message.status != "SCHEDULED":
        raise FailedPrecondition(
            f"The message {ref} is {message.status}; only a SCHEDULED message can be canceled."
        )
    now = utcnow()
    event = states.record(message, "CANCELED", now)
    message.due_time = None
    session.flush()
    outbox.append(session, [event])
    return message


# --- inbound ---------------------------------------------------------------------------------


def keyword(body: str) -> str | None:
    """STOP, START or HELP when the body is one of their variants (any case, spaces and a final
    punctuation mark aside), else None."""
    word = body.strip().rstrip(".!").strip().upper()
    if word in STOP_WORDS:
        return "STOP"
    if word in START_WORDS:
        return "START"
    if word in HELP_WORDS:
        return "HELP"
    return None


def help_reply(session: Session, workspace_id: int) -> str:
    configured = session.scalar(select(MessagingSettings.help_reply).where(MessagingSettings.workspace_id == workspace_id))
    return configured or DEFAULT_HELP_REPLY


def receive(
    session: Session, workspace_id: int, source: str, destination: str, body: str, webhook: str | None, at: datetime,
) -> Message:
    """Stores an SMS `destination` (a number of the workspace) received, RECEIVED, and applies its keyword:
    STOP and START change the opt-out list; HELP queues the workspace's reply, from `destination` to `source`."""
    counted = segments.count(body)
    message = Message(
        ref=new_ref(), workspace_id=workspace_id, type="SMS", direction="INBOUND", source=source,
        destination=destination, body=body, encoding=counted.encoding, num_segments=counted.count,
        failure_reason="", webhook=webhook, send_time=None, due_time=None, attempts=0, event_sequence=0,
        create_time=at, version=1, faxline_ref="", filename="", page_count=0, size_bytes=0, fax_failure="",
    )
    new_events = [states.record(message, "RECEIVED", at)]
    session.add(message)
    word = keyword(body)
    opt_out = (OptOut.workspace_id == workspace_id, OptOut.sender == destination, OptOut.recipient == source)
    if word == "STOP" and session.scalar(select(OptOut.id).where(*opt_out)) is None:
        session.add(OptOut(workspace_id=workspace_id, sender=destination, recipient=source, create_time=at))
    elif word == "START":
        session.execute(delete(OptOut).where(*opt_out))
    elif word == "HELP":
        reply = NewMessage(destination, True, source, help_reply(session, workspace_id), None, None, None)
        reply_message, queued = new_message_row(workspace_id, reply, at)
        session.add(reply_message)
        new_events.append(queued)
    session.flush()
    outbox.append(session, new_events)
    return message


def checked_inbound(source: str, destination: str, body: str) -> tuple[str, str, str]:
    v = Violations()
    checked_source = validation.e164(v, "source", source) or ""
    checked_destination = validation.e164(v, "destination", destination) or ""
    checked_body(v, "body", body)
    v.raise_if_any()
    return checked_source, checked_destination, body


# --- settings --------------------------------------------------------------------------------


def settings_of(session: Session, caller: Caller) -> MessagingSettings:
    found = session.get(MessagingSettings, caller.workspace_id)
    return found or MessagingSettings(workspace_id=caller.workspace_id, help_reply="")


def update_settings(session: Session, caller: Caller, help_reply: str | None) -> MessagingSettings:
    v = Violations()
    if help_reply is not None:
        checked_body(v, "help_reply", help_reply or " ")
    v.raise_if_any()
    found = session.get(MessagingSettings, caller.workspace_id)
    if found is None:
        found = MessagingSettings(workspace_id=caller.workspace_id, help_reply="")
        session.add(found)
    if help_reply is not None:
        found.help_reply = help_reply
    found.update_time = utcnow()
    session.flush()
    return found


def not_found_number(e164: str) -> NotFound:
    return NotFound(f"No workspace holds {e164} ACTIVE.")


def sender_not_owned(source: str) -> InvalidArgument:
    return InvalidArgument.of("source", f"{source} is not a number the workspace holds ACTIVE")


def receive_at(session: Session, workspace_ref: str, source: str, destination: str, body: str,
               webhook: str | None) -> Message:
    """`receive`, in the workspace `workspace_ref` (as Numbers names it), now."""
    workspace_id = session.scalar(select(Workspace.id).where(Workspace.ref == workspace_ref))
    if workspace_id is None:
        raise not_found_number(destination)
    return receive(session, workspace_id, source, destination, body, webhook, utcnow())
