"""The caller's numbers and agents, asked of the Numbers and Agents services with the project's own clients.

One pair of clients (one channel each) serves every call; each lookup runs
with the caller's own API key and within what is left of the caller's deadline.

What they answer about an agent that can place calls, or a number the workspace holds, is reused for
`VOXPLANE_CALLS_LOOKUP_TTL` seconds (1 by default) by later calls of the same workspace, made with any of
its keys (a key that may place calls may read the workspace's agents and numbers; a revoked one is refused
before anything is asked): asking every time cost two gRPC calls per call, about half of CreateCall's CPU. So for up to that long after an
agent is disabled or a number is suspended, calls may still use them. A negative answer (unknown,
not the workspace's, disabled) is never reused: what was just created works at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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

from ..core import config, tls
from ..core.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable
from .parties import Agent, Ingress


def _unreachable(service: str, endpoint: str | Sequence[str], error: VoxplaneError) -> Exception:
    if isinstance(error, PermissionDeniedError):
        return PermissionDenied(error.message)
    if isinstance(error, UnauthenticatedError):
        return Unauthenticated(error.message)
    if isinstance(error, InvalidArgumentError):
        # What the service refused is a value of the caller's (a party): the caller's error, not an outage.
        return InvalidArgument.of("request", f"the {service} service refused a value of it: {error.message}")
    at = endpoint if isinstance(endpoint, str) else ", ".join(endpoint)
    return Unavailable(
        f"The {service} service at {at} could not check the call's parties ({error.code.name}); retry shortly."
    )


class Answers:
    """Positive answers of the directory, by (workspace, question), each until it expires."""

    MAX = 10_000  # answers kept; past that the expired ones go, then all

    def __init__(self) -> None:
        self._kept: dict[tuple[str, ...], tuple[float, Any]] = {}

    async def get(self, key: tuple[str, ...], ask: Callable[[], Awaitable[Any]], keep: Callable[[Any], bool]) -> Any:
        """The answer kept for `key`, else `ask()`'s, kept if `keep(answer)`."""
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        answer = await ask()
        ttl = config.settings().calls_lookup_ttl
        if ttl > 0 and keep(answer):
            if len(self._kept) >= self.MAX:
                self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
                if len(self._kept) >= self.MAX:
                    self._kept.clear()
            self._kept[key] = (now + ttl, answer)
        return answer


class Services:
    """The Numbers and Agents clients of one Calls servicer, and the answers they gave."""

    def __init__(self, numbers_endpoint: str, agents_endpoint: str):
        self.numbers = AsyncNumbers(endpoint=numbers_endpoint, max_attempts=2, **tls.client_options(numbers_endpoint))
        self.agents = AsyncAgents(endpoint=agents_endpoint, max_attempts=2, **tls.client_options(agents_endpoint))
        self.answers = Answers()

    def directory(self, api_key: str, workspace_ref: str, time_remaining: float | None) -> CallerDirectory:
        """The directory of the caller with `api_key`, of the workspace `workspace_ref`."""
        return CallerDirectory(
            self.numbers.with_api_key(api_key, timeout=time_remaining),
            self.agents.with_api_key(api_key, timeout=time_remaining),
            self.answers,
            workspace_ref,
        )

    async def ingress(self, service_key: str, e164: str) -> Ingress | None:
        """Where Numbers routes a call to `e164`, asked with a `service` key (which sees every workspace's
        numbers); None when no ACTIVE or SUSPENDED number has it. Never reused: routing changes take effect
        at once."""
        try:
            found = await self.numbers.with_api_key(service_key).get_ingress_info(
                e164_number=e164, include_suspended=True
            )
        except (NotFoundError, InvalidArgumentError):
            return None
        except VoxplaneError as error:
            raise _unreachable("Numbers", self.numbers.options.endpoint or "", error) from None
        return Ingress(
            workspace_ref=found.workspace_ref, e164=found.e164_number,
            sip_target=found.aor_link or found.forward_sip_to or None,
            webhook=found.ingress_info.webhook if found.HasField("ingress_info") else None,
            suspended=found.state == numbers_pb2.NUMBER_STATE_SUSPENDED,
        )

    async def agent_at(self, service_key: str, username: str, domain: str) -> tuple[Agent, str] | None:
        """The agent registering as username@domain and its workspace's ref, asked with a `service` key (which
        sees every workspace's agents); None when no agent has that address. Never reused, as `ingress`."""
        try:
            found = await self.agents.with_api_key(service_key).find_agent_by_address(username=username, domain=domain)
        except (NotFoundError, InvalidArgumentError):
            return None
        except VoxplaneError as error:
            raise _unreachable("Agents", self.agents.options.endpoint or "", error) from None
        agent = found.agent
        return Agent(ref=agent.ref, enabled=agent.enabled, username=agent.username,
                     domains=tuple(agent.domains)), found.workspace_ref

    async def close(self) -> None:
        await self.numbers.close()
        await self.agents.close()


class CallerDirectory:
    """parties.Directory for one caller."""

    def __init__(self, numbers: AsyncNumbers, agents: AsyncAgents, answers: Answers, workspace_ref: str):
        self.numbers = numbers
        self.agents = agents
        self.answers = answers
        self.workspace = workspace_ref  # what the answers are about, whichever of its keys asked

    async def owns_number(self, e164: str) -> bool:
        return await self.answers.get((self.workspace, "number", e164), lambda: self._owns_number(e164), bool)

    async def agent(self, ref: str) -> Agent | None:
        return await self.answers.get(
            (self.workspace, "agent", ref), lambda: self._agent(ref), lambda found: found is not None and found.enabled
        )

    async def agent_number(self, agent: Agent) -> str | None:
        """The agent's number: the workspace's first ACTIVE number routed to one of its AORs."""
        key = (self.workspace, "agent number", *agent.addresses)
        return await self.answers.get(key, lambda: self._agent_number(agent), lambda _: True)

    async def _owns_number(self, e164: str) -> bool:
        try:
            page = await self.numbers.list_numbers(numbers_pb2.ListNumbersRequest(
                filter=numbers_pb2.NumberFilter(e164_prefix=e164, state=numbers_pb2.NUMBER_STATE_ACTIVE), page_size=100
            ))
        except VoxplaneError as error:
            raise _unreachable("Numbers", self.numbers.options.endpoint or "", error) from None
        return any(n.e164_number == e164 for n in page.numbers)

    async def _agent(self, ref: str) -> Agent | None:
        try:
            found = await self.agents.get_agent(ref)
        except (NotFoundError, InvalidArgumentError):
            return None
        except VoxplaneError as error:
            raise _unreachable("Agents", self.agents.options.endpoint or "", error) from None
        return Agent(ref=found.ref, enabled=found.enabled, username=found.username, domains=tuple(found.domains))

    async def _agent_number(self, agent: Agent) -> str | None:
        for address in agent.addresses:
            try:
                page = await self.numbers.list_numbers(numbers_pb2.ListNumbersRequest(
                    filter=numbers_pb2.NumberFilter(aor_link=address, state=numbers_pb2.NUMBER_STATE_ACTIVE),
                    page_size=1,
                ))
            except VoxplaneError as error:
                raise _unreachable("Numbers", self.numbers.options.endpoint or "", error) from None
            if page.numbers:
                return page.numbers[0].e164_number
        return None
