"""Rules of a workspace's webhook settings (sipgate.io's): default URLs by direction, a whitelist
of the agents and numbers whose calls use them, and whether delivered deliveries are kept."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..core import validation
from ..core.errors import InvalidArgument, Violations
from ..persistence.base import utcnow
from .models import WebhookSettings

FIELDS = ("incoming_url", "outgoing_url", "whitelist", "keep_delivery_log")
MAX_WHITELIST = 1000
_REF = re.compile(r"[0-9a-f]{28}")  # persistence.base.new_ref


@dataclass(frozen=True)
class Changes:
    incoming_url: str = ""
    outgoing_url: str = ""
    whitelist: list[str] = field(default_factory=list)
    keep_delivery_log: bool = False


@dataclass(frozen=True)
class Shown(Changes):
    update_time: datetime | None = None


def _shown(row: WebhookSettings | None) -> Shown:
    if row is None:
        return Shown()
    return Shown(row.incoming_url, row.outgoing_url, list(row.whitelist), row.keep_delivery_log, row.update_time)


def get(session: Session, workspace_id: int) -> Shown:
    return _shown(session.get(WebhookSettings, workspace_id))


def _whitelist_entry(v: Violations, index: int, entry: str) -> str | None:
    entry = entry.strip()
    if _REF.fullmatch(entry):
        return entry
    if entry.startswith("+"):
        return validation.e164(v, f"whitelist[{index}]", entry)
    v.add(f"whitelist[{index}]", f"{entry!r} is neither an agent ref nor an E.164 number such as '+14155550100'")
    return None


def _checked(changes: Changes, fields: Collection[str]) -> Changes:
    v = Violations()
    urls = {
        name: (validation.http_url(v, name, value) or "") if name in fields and value.strip() else ""
        for name, value in (("incoming_url", changes.incoming_url), ("outgoing_url", changes.outgoing_url))
    }
    whitelist: list[str] = []
    if "whitelist" in fields:
        if len(changes.whitelist) > MAX_WHITELIST:
            raise InvalidArgument.of("whitelist", f"must hold at most {MAX_WHITELIST:,} entries, got {len(changes.whitelist):,}")
        entries = (_whitelist_entry(v, i, e) for i, e in enumerate(changes.whitelist))
        whitelist = list(dict.fromkeys(e for e in entries if e))
    v.raise_if_any()
    return Changes(urls["incoming_url"], urls["outgoing_url"], whitelist, changes.keep_delivery_log)


def update(session: Session, workspace_id: int, changes: Changes, fields: Collection[str]) -> Shown:
    """Sets the settings named in `fields` to their value in `changes` (a default clears one)."""
    checked = _checked(changes, fields)
    row = session.get(WebhookSettings, workspace_id, with_for_update=True)
    if row is None:
        row = WebhookSettings(workspace_id=workspace_id, incoming_url="", outgoing_url="", whitelist=[],
                              keep_delivery_log=False)
        session.add(row)
    for name in fields:
        setattr(row, name, getattr(checked, name))
    row.update_time = utcnow()
    session.flush()
    return _shown(row)


def clear(session: Session, workspace_id: int) -> Shown:
    session.execute(delete(WebhookSettings).where(WebhookSettings.workspace_id == workspace_id))
    return Shown()
