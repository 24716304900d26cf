"""The rules of faxes: what SendFax accepts (a readable, unencrypted PDF of at most 20 MB and 200 pages,
checked with pypdf), how a fax is stored, and faxlines."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from pypdf import PdfReader
from pypdf.errors import PdfReadError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Violations
from ..core.resources import get_owned
from ..events import outbox
from ..persistence import keyset
from ..persistence.base import new_ref, utcnow
from . import sending, states
from .models import FaxDocument, Faxline, Message

MAX_PDF_BYTES = 20 * 1024 * 1024
MAX_PAGES = 200
CHUNK_BYTES = 1024 * 1024
MAX_ALIAS, MAX_TAGLINE, MAX_FILENAME = 255, 64, 255


@dataclass(frozen=True)
class NewFax:
    faxline_ref: str
    destination: str
    filename: str
    send_time: datetime | None
    webhook: str | None


def checked_new_fax(faxline_ref: str, destination: str, filename: str, send_time: datetime | None, webhook: str,
                    now: datetime) -> NewFax:
    v = Violations()
    if not faxline_ref:
        v.add("header.faxline_ref", "is required")
    checked_destination = validation.e164(v, "header.destination", destination) or ""
    name = validation.text(v, "header.filename", filename, max_len=MAX_FILENAME) or "fax.pdf"
    due = sending.checked_send_time(v, "header.send_time", send_time, now)
    hook = validation.http_url(v, "header.webhook", webhook) if webhook.strip() else None
    v.raise_if_any()
    return NewFax(faxline_ref, checked_destination, name, due, hook)


def too_large(size: int) -> InvalidArgument:
    return InvalidArgument.of("chunk", f"the PDF must be at most 20 MB ({MAX_PDF_BYTES:,} bytes), got more than "
                                       f"{size:,} bytes")


def page_count(pdf: bytes) -> int:
    """The pages of `pdf`, if pypdf can read it, it is not password-protected and has 1 to 200 pages."""
    if not pdf:
        raise InvalidArgument.of("chunk", "no PDF was sent")
    try:
        reader = PdfReader(io.BytesIO(pdf))
        if reader.is_encrypted:
            raise InvalidArgument.of("chunk", "the PDF is password-protected; send it unencrypted")
        pages = len(reader.pages)
    except InvalidArgument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError) as error:
        raise InvalidArgument.of("chunk", f"the file is not a readable PDF ({type(error).__name__})") from None
    if not 1 <= pages <= MAX_PAGES:
        raise InvalidArgument.of("chunk", f"the PDF must have 1 to {MAX_PAGES} pages, it has {pages}")
    return pages


def insert_fax(session: Session, caller: Caller, new: NewFax, pdf: bytes, pages: int) -> Message:
    line = get_owned(session, Faxline, caller, new.faxline_ref)
    if not line.can_send:
        raise FailedPrecondition(f"The faxline {line.ref} cannot send (can_send is false).")
    now = utcnow()
    message = Message(
        ref=new_ref(), workspace_id=caller.workspace_id, type="FAX", direction="OUTBOUND", source=line.number,
        destination=new.destination, body="", encoding="", num_segments=0, failure_reason="", webhook=new.webhook,
        send_time=new.send_time, due_time=new.send_time or now, attempts=0, event_sequence=0, create_time=now,
        version=1, faxline_ref=line.ref, filename=new.filename, page_count=pages, size_bytes=len(pdf), fax_failure="",
    )
    event = states.record(message, "SCHEDULED" if new.send_time else "PENDING", now)
    session.add(message)
    session.flush()
    session.add(FaxDocument(message_id=message.id, data=pdf))
    outbox.append(session, [event])
    return message


def get_fax(session: Session, caller: Caller, ref: str) -> Message:
    return get_owned(session, Message, caller, ref, where=Message.type == "FAX")


# --- faxlines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaxlineFields:
    """A faxline's settable fields; None leaves one alone (or, on create, at its default)."""

    alias: str | None = None
    tagline: str | None = None
    can_send: bool | None = None
    can_receive: bool | None = None


def _checked(v: Violations, fields: FaxlineFields) -> FaxlineFields:
    alias = validation.text(v, "alias", fields.alias, max_len=MAX_ALIAS) if fields.alias is not None else None
    tagline = validation.text(v, "tagline", fields.tagline, max_len=MAX_TAGLINE) if fields.tagline is not None else None
    return FaxlineFields(alias, tagline, fields.can_send, fields.can_receive)


def _apply(line: Faxline, fields: FaxlineFields) -> None:
    for name, value in vars(fields).items():
        if value is not None:
            setattr(line, name, value)


def checked_faxline_number(number: str) -> str:
    v = Violations()
    e164 = validation.e164(v, "number", number) or ""
    v.raise_if_any()
    return e164


def create_faxline(session: Session, caller: Caller, number: str, fields: FaxlineFields) -> Faxline:
    v = Violations()
    checked = _checked(v, fields)
    v.raise_if_any()
    line = Faxline(workspace_id=caller.workspace_id, number=number, alias="", tagline="", can_send=True,
                   can_receive=True)
    _apply(line, checked)
    try:
        with session.begin_nested():
            session.add(line)
    except IntegrityError:
        raise AlreadyExists(f"The workspace has a faxline on {number} already.") from None
    return line


def update_faxline(session: Session, caller: Caller, ref: str, fields: FaxlineFields, etag: str) -> Faxline:
    v = Violations()
    checked = _checked(v, fields)
    v.raise_if_any()
    line = get_owned(session, Faxline, caller, ref, etag=etag)
    _apply(line, checked)
    line.update_time = utcnow()
    session.flush()
    return line


def delete_faxline(session: Session, caller: Caller, ref: str, etag: str) -> None:
    session.delete(get_owned(session, Faxline, caller, ref, etag=etag))


def list_faxlines(session: Session, caller: Caller, after_id: int | None, size: int) -> tuple[list[Faxline], int | None]:
    query = select(Faxline).where(Faxline.workspace_id == caller.workspace_id)
    rows, last = keyset.page(session, query, Faxline.id, after_id, size)
    return list(rows), last
