"""The rules of inbound calls: what SimulateInboundCall accepts, and how a call the network received is
stored once Numbers said where it goes (ingress).

Routing itself (ask Numbers, then ring the SIP target or ask the webhook) is the Runner's; what a
webhook's reply does is steering's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import ratelimits, validation
from ..core.auth import Caller, Role
from ..core.errors import Violations
from ..events.models import Event
from ..persistence.tenancy import Workspace
from ..webhooks import dispatch
from . import guards, live
from .gateway import InboundCall
from .models import Call
from .parties import Agent, Ingress

SIP_ADDRESS = re.compile(r"sips?:([^@;]+)@([^;:]+)")  # sip:user@host, as the gateway reports a caller


@dataclass(frozen=True)
class SimulatedCall:
    """A SimulateInboundCall request, each field checked."""

    source: str  # E.164 or a SIP URI
    destination: str  # E.164
    digits: str  # what the caller presses when a gather asks; "" nothing


def checked_simulated_call(source: str, destination: str, digits: str) -> SimulatedCall:
    v = Violations()
    checked_source = live.checked_party(v, "source", source) or ""
    checked_destination = validation.e164(v, "destination", destination) or ""
    if digits and not live.DTMF.fullmatch(digits):
        v.add("digits", f"must be up to 64 of 0-9 * # A-D, got {digits[:80]!r}")
    v.raise_if_any()
    return SimulatedCall(checked_source, checked_destination, digits)


@dataclass(frozen=True)
class Routed:
    """What became of an inbound call: the call stored in the number's workspace, or none (no workspace
    owns the number: the network rejected it with `rejected_cause`)."""

    call: Call | None
    rejected_cause: str | None = None


def insert_inbound_call(
    session: Session, inbound: InboundCall, ingress: Ingress, runner_id: str
) -> tuple[Call, str | None]:
    """Stores the QUEUED inbound call in the number's workspace, under the ref the network gave it: from
    the caller (also its caller ID when that is a number), to the number, its events going to the
    number's webhook (None: the workspace's default for inbound calls). Returns it and the webhook
    whose reply to NEW_CALL steers it: the number's, else, for a number routed to a SIP target, the
    workspace's default for inbound calls if its whitelist lets the number's calls use it."""
    workspace_id = session.scalar(select(Workspace.id).where(Workspace.ref == ingress.workspace_ref))
    assert workspace_id is not None, "Numbers answered for a workspace this database has"
    call = _insert(session, workspace_id, inbound, ingress, runner_id)
    if ingress.suspended:
        return call, None
    return call, ingress.webhook or _default_url(session, workspace_id, call.ref)


def agent_address(source: str) -> tuple[str, str] | None:
    """(username, domain) of a caller reported as a SIP URI `sip:user@domain`; None for a number."""
    match = SIP_ADDRESS.fullmatch(source)
    return (match.group(1), match.group(2).lower()) if match else None


def insert_phone_call(session: Session, placed: InboundCall, agent: Agent, workspace_ref: str, runner_id: str) -> Call:
    """Stores, under the ref the network gave it, the QUEUED outbound call an agent's phone placed to a
    number no workspace has, in the agent's workspace: from the agent to that number, as CreateCall would
    from the agent, after the workspace's toll-fraud guards (PERMISSION_DENIED, RESOURCE_EXHAUSTED) and
    counted against its rate of created calls. Its caller ID is anonymous."""
    workspace_id = session.scalar(select(Workspace.id).where(Workspace.ref == workspace_ref))
    assert workspace_id is not None, "Agents answered for a workspace this database has"
    guards.check_new_call(session, workspace_id, guards.destination_of(placed.destination))
    owner = Caller(key_id="", role=Role.SERVICE, workspace_id=workspace_id, workspace_ref=workspace_ref)
    new = live.NewCall(
        source=agent.ref, source_is_number=False, destination=placed.destination, caller_id="", device_id="",
        webhook=None, timeout=live.DEFAULT_TIMEOUT, metadata={}, request_id=None,
    )
    call = live.insert_call(session, owner, new, "", runner_id, ref=placed.ref)
    ratelimits.take_one_created(session, ratelimits.CALLS, workspace_id)
    return call


def call_by_ref(session: Session, ref: str) -> Call:
    """A call as it is stored now (the network's reports may have changed it since it was inserted)."""
    call = session.scalar(select(Call).where(Call.ref == ref))
    assert call is not None
    return call


def _default_url(session: Session, workspace_id: int, ref: str) -> str | None:
    """Where the deliveries of the call's NEW_CALL go by the workspace's settings, as the dispatcher sees it."""
    new_call = session.scalar(select(Event).where(Event.resource_ref == ref, Event.type == "NEW_CALL"))
    assert new_call is not None, "insert_call stores the NEW_CALL event"
    return dispatch.defaults_of(session, [workspace_id]).get(workspace_id, dispatch.Defaults()).url_for(new_call) or None


def _insert(session: Session, workspace_id: int, inbound: InboundCall, ingress: Ingress, runner_id: str) -> Call:
    owner = Caller(key_id="", role=Role.SERVICE, workspace_id=workspace_id, workspace_ref=ingress.workspace_ref)
    caller_id = inbound.source if inbound.source.startswith("+") else ""
    new = live.NewCall(
        source=inbound.source, source_is_number=bool(caller_id), destination=ingress.e164, caller_id=caller_id,
        device_id="", webhook=ingress.webhook, timeout=live.DEFAULT_TIMEOUT, metadata={}, request_id=None,
    )
    return live.insert_call(session, owner, new, caller_id, runner_id, ref=inbound.ref, direction="INBOUND")
