"""The rules of Agents: valid SIP identities, write-only secrets, unique usernames per domain."""

from __future__ import annotations

import string
from collections.abc import Sequence

from sqlalchemy import select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..core import validation
from ..core.auth import Caller
from ..core.errors import AlreadyExists, NotFound, Violations
from ..core.resources import get_owned, insert_once
from ..edge import registrations
from ..persistence import keyset
from ..persistence.base import utcnow
from ..persistence.tenancy import Workspace
from .credentials import digests
from .models import Agent, AgentCredential

# RFC 3261 user part: unreserved and user-unreserved characters (no escapes, no ':' or '@').
USERNAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.!~*'()&=+$,;?/")
MAX_USERNAME = 64
MIN_SECRET, MAX_SECRET = 8, 128
MAX_DOMAINS = 20
MAX_NAME = 255
PRIVACY_VALUES = ("NONE", "PRIVATE")


def _username(v: Violations, value: str) -> str:
    if not value:
        v.add("username", "is required")
    elif len(value) > MAX_USERNAME:
        v.add("username", f"must be at most {MAX_USERNAME} characters, got {len(value)}")
    elif not USERNAME_CHARACTERS.issuperset(value):
        bad = "".join(sorted(set(value) - USERNAME_CHARACTERS))
        v.add("username", f"{value!r} has characters a SIP user part cannot hold: {bad!r}")
    return value


def _secret(v: Violations, value: str) -> str:
    if not value:
        v.add("secret", f"is required ({MIN_SECRET} to {MAX_SECRET} characters)")
    elif not MIN_SECRET <= len(value) <= MAX_SECRET:
        v.add("secret", f"must be {MIN_SECRET} to {MAX_SECRET} characters long, got {len(value)}")
    return value


def _domains(v: Violations, values: Sequence[str]) -> list[str]:
    if not values:
        v.add("domains", "needs at least one SIP domain")
    elif len(values) > MAX_DOMAINS:
        v.add("domains", f"may hold at most {MAX_DOMAINS} domains, got {len(values)}")
    checked = [validation.hostname(v, f"domains[{i}]", d) for i, d in enumerate(values)]
    return list(dict.fromkeys(d for d in checked if d))  # without repeats, in the caller's order


def _privacy(v: Violations, value: str) -> str:
    if value and value not in PRIVACY_VALUES:  # "": a value the contract lacks, in `v` already
        v.add("privacy", f"must be PRIVACY_NONE or PRIVACY_PRIVATE, got {value!r}")
    return value


def _credentials(username: str, domains: list[str], secret: str) -> list[AgentCredential]:
    return [
        AgentCredential(username=username, domain=domain, **vars(digests(username, domain, secret)))
        for domain in domains
    ]


def _aors(agent: Agent) -> list[tuple[str, str]]:
    return [(c.username, c.domain) for c in agent.credentials]


def _username_taken(session: Session, username: str, domains: list[str], agent_id: int | None = None
                    ) -> AlreadyExists:
    """The error naming the domains where another agent holds `username`."""
    taken = session.scalars(
        select(AgentCredential.domain).where(
            AgentCredential.username == username,
            AgentCredential.domain.in_(domains),
            AgentCredential.agent_id != agent_id if agent_id is not None else true(),
        )
    ).all()
    where = ", ".join(repr(d) for d in taken) or "one of its domains"
    return AlreadyExists(f"The username {username!r} is already taken in {where}.")


def create_agent(
    session: Session,
    caller: Caller,
    v: Violations,
    *,
    name: str,
    username: str,
    secret: str,
    privacy: str,
    domains: Sequence[str],
    enabled: bool | None,
    request_id: str,
) -> Agent:
    """A new agent; `v` holds what reading the request found wrong already, reported with the rest."""
    agent = Agent(
        workspace_id=caller.workspace_id,
        name=validation.text(v, "name", name, max_len=MAX_NAME),
        username=_username(v, username),
        privacy=_privacy(v, "NONE" if privacy == "UNSPECIFIED" else privacy),
        enabled=True if enabled is None else enabled,
        request_id=validation.request_id(v, request_id),
    )
    checked_domains = _domains(v, domains)
    _secret(v, secret)
    v.raise_if_any()
    agent.credentials = _credentials(username, checked_domains, secret)
    return insert_once(session, agent, caller, lambda: _username_taken(session, username, checked_domains))


def get_agent(session: Session, caller: Caller, ref: str, etag: str = "") -> Agent:
    return get_owned(session, Agent, caller, ref, etag=etag)


def agent_by_address(session: Session, caller: Caller, username: str, domain: str) -> tuple[Agent, str]:
    """The agent registering as username@domain, and its workspace's ref; a `service` caller finds any
    workspace's, others only their own (else NOT_FOUND, as if it did not exist)."""
    v = Violations()
    if not username:
        v.add("username", "is required")
    if not domain:
        v.add("domain", "is required")
    v.raise_if_any()
    found = session.execute(
        select(Agent, Workspace.ref).join(AgentCredential, AgentCredential.agent_id == Agent.id)
        .join(Workspace, Workspace.id == Agent.workspace_id)
        .where(AgentCredential.username == username, AgentCredential.domain == domain.lower())
    ).first()
    if found is None or (found[0].workspace_id != caller.workspace_id and not caller.sees_every_workspace_routing):
        raise NotFound(f"No agent has the address sip:{username}@{domain}.")
    return found[0], found[1]


def update_agent(
    session: Session,
    caller: Caller,
    v: Violations,
    ref: str,
    *,
    name: str | None,
    username: str | None,
    secret: str | None,
    privacy: str | None,
    domains: Sequence[str] | None,
    enabled: bool | None,
    etag: str,
) -> Agent:
    """Changes what is not None; `v` as for create_agent."""
    if name is not None:
        name = validation.text(v, "name", name, max_len=MAX_NAME)
    if username is not None:
        _username(v, username)
    if secret is not None:
        _secret(v, secret)
    if privacy is not None:
        _privacy(v, privacy)
    new_domains = _domains(v, domains) if domains is not None else None
    v.raise_if_any()

    agent = get_agent(session, caller, ref, etag)
    identity_changes = (username is not None and username != agent.username) or (
        new_domains is not None and new_domains != agent.domains
    )
    if identity_changes and secret is None:
        v.add("secret", "is required when username or domains change: only digests of it are stored")
        v.raise_if_any()
    if name is not None:
        agent.name = name
    if privacy is not None:
        agent.privacy = privacy
    if enabled is not None:
        agent.enabled = enabled
    if enabled is False or secret is not None:
        # A disabled agent, or one whose credentials are replaced, keeps no registration made with the old ones.
        registrations.forget(session, _aors(agent))
    agent.update_time = utcnow()  # every update moves the etag, a new secret included
    if secret is not None:
        agent.username = username if username is not None else agent.username
        domains_now = new_domains if new_domains is not None else agent.domains
        try:
            with session.begin_nested():
                # Old rows go first: the same (username, domain) may come back.
                agent.credentials.clear()
                session.flush()
                agent.credentials.extend(_credentials(agent.username, domains_now, secret))
        except IntegrityError:
            raise _username_taken(session, agent.username, domains_now, agent.id) from None
    session.flush()
    return agent


def delete_agent(session: Session, caller: Caller, ref: str, etag: str) -> None:
    agent = get_agent(session, caller, ref, etag)
    registrations.forget(session, _aors(agent))
    session.delete(agent)


def list_agents(session: Session, caller: Caller, after_id: int | None, size: int
                ) -> tuple[Sequence[Agent], int | None]:
    query = select(Agent).where(Agent.workspace_id == caller.workspace_id)
    return keyset.page(session, query, Agent.id, after_id, size)
