"""Agents' conversions between proto messages and the rules' objects. Secrets go in, never out."""

from __future__ import annotations

from voxplane.agents.v1 import agents_pb2 as pb

from ..core.convert import ProtoEnum, timestamp
from .models import Agent

PRIVACY = ProtoEnum(pb.Privacy)


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
