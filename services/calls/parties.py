"""The parties a call names that belong to other services: agents, and the workspace's numbers.

Calls never reads those services' tables: it asks through a `Directory` (directory.py implements it
with the Numbers and Agents clients).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Agent:
    ref: str
    enabled: bool
    username: str = ""
    domains: tuple[str, ...] = ()

    @property
    def addresses(self) -> list[str]:
        """The SIP AORs the agent registers as: the numbers routed to one of them are its numbers."""
        return [f"sip:{self.username}@{domain}" for domain in self.domains]


@dataclass(frozen=True)
class Ingress:
    """Where the Numbers service routes an inbound call: exactly one of `sip_target` (the number's
    `aor_link` or `forward_sip_to`) and `webhook` is set. A `suspended` number routes no call."""

    workspace_ref: str
    e164: str
    sip_target: str | None
    webhook: str | None
    suspended: bool = False


class Directory(Protocol):
    """The caller's workspace as the Numbers and Agents services see it."""

    async def owns_number(self, e164: str) -> bool:
        """Whether the workspace has an ACTIVE number with this E.164."""

    async def agent(self, ref: str) -> Agent | None:
        """The workspace's agent `ref`, or None."""

    async def agent_number(self, agent: Agent) -> str | None:
        """The agent's own number (the workspace number routed to it), or None when unknown."""
