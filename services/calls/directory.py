"""The caller's numbers and agents, asked of the Numbers and Agents services with the project's own clients.

One pair of clients (one channel each) serves every call; each lookup runs
with the caller's own API key and within what is left of the caller's deadline.
"""

from __future__ import annotations

from voxplane import (
    AsyncAgents,
    AsyncNumbers,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    VoxplaneError,
)
from voxplane.numbers.v1 import numbers_pb2

from ..core.errors import PermissionDenied, Unauthenticated, Unavailable
from .live import Agent


def _unreachable(service: str, endpoint: str, error: VoxplaneError) -> Exception:
    if isinstance(error, PermissionDeniedError):
        return PermissionDenied(error.message)
    if isinstance(error, UnauthenticatedError):
        return Unauthenticated(error.message)
    return Unavailable(
        f"The {service} service at {endpoint} could not check the call's parties ({error.code.name}); retry shortly."
    )


class Services:
    """The Numbers and Agents clients of one Calls servicer."""

    def __init__(self, numbers_endpoint: str, agents_endpoint: str):
        self.numbers = AsyncNumbers(endpoint=numbers_endpoint, max_attempts=2)
        self.agents = AsyncAgents(endpoint=agents_endpoint, max_attempts=2)

    def directory(self, api_key: str, time_remaining: float | None) -> CallerDirectory:
        return CallerDirectory(
            self.numbers.with_api_key(api_key, timeout=time_remaining),
            self.agents.with_api_key(api_key, timeout=time_remaining),
        )

    async def close(self) -> None:
        await self.numbers.close()
        await self.agents.close()


class CallerDirectory:
    """live.Directory for one caller."""

    def __init__(self, numbers: AsyncNumbers, agents: AsyncAgents):
        self.numbers = numbers
        self.agents = agents

    async def owns_number(self, e164: str) -> bool:
        try:
            page = await self.numbers.list_numbers(
                e164_prefix=e164, state=numbers_pb2.NUMBER_STATE_ACTIVE, page_size=100
            )
        except VoxplaneError as error:
            raise _unreachable("Numbers", self.numbers.options.endpoint or "", error) from None
        return any(n.e164_number == e164 for n in page.numbers)

    async def agent(self, ref: str) -> Agent | None:
        try:
            found = await self.agents.get_agent(ref)
        except (NotFoundError, InvalidArgumentError):
            return None
        except VoxplaneError as error:
            raise _unreachable("Agents", self.agents.options.endpoint or "", error) from None
        return Agent(ref=found.ref, enabled=found.enabled, username=found.username, domains=tuple(found.domains))

    async def agent_number(self, agent: Agent) -> str | None:
        """The agent's number: the workspace's first ACTIVE number routed to one of its AORs."""
        for address in agent.addresses:
            try:
                page = await self.numbers.list_numbers(
                    aor_link=address, state=numbers_pb2.NUMBER_STATE_ACTIVE, page_size=1
                )
            except VoxplaneError as error:
                raise _unreachable("Numbers", self.numbers.options.endpoint or "", error) from None
            if page.numbers:
                return page.numbers[0].e164_number
        return None
