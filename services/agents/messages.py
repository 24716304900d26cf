"""Agents' conversions between proto messages and the rules' objects. Secrets go in, never out."""

from __future__ import annotations

from typing import Any

from voxplane.agents.v1 import agents_pb2 as pb

from ..core.convert import ProtoEnum, changed_fields, timestamp
from ..core.errors import Violations
from .models import Agent

PRIVACY = ProtoEnum(pb.Privacy)
UPDATE_AGENT_FIELDS = ("name", "username", "secret", "privacy", "domains", "enabled")


def agent_update(request: pb.UpdateAgentRequest, v: Violations) -> dict[str, Any]:
    """UpdateAgent's changes as update_agent takes them: None for a field left alone. A privacy
    number the contract lacks goes to `v`."""
    changes = changed_fields(request, UPDATE_AGENT_FIELDS)
    values: dict[str, Any] = {
        "name": request.name, "username": request.username, "secret": request.secret,
        "privacy": PRIVACY.name(request.privacy, "privacy", v) if "privacy" in changes else None,
        "domains": list(request.domains), "enabled": request.enabled,
    }
    return {name: value if name in changes else None for name, value in values.items()}


def agent_proto(agent: Agent) -> pb.Agent:
    return pb.Agent(
        ref=agent.ref,
        name=agent.name,
        username=agent.username,
        privacy=PRIVACY.number(agent.privacy),
        domains=agent.domains,
        enabled=agent.enabled,
        create_time=timestamp(agent.create_time),
        update_time=timestamp(agent.update_time),
        etag=agent.etag,
    )
