"""What Messaging asks the Numbers service, with the project's own client: whether the caller's
workspace holds a sender number ACTIVE (Calls' directory, and the answers it keeps for a second, reused),
and where an SMS to a number goes (GetMessagingRoute, with Messaging's `service` key). Where an SMS goes
is also kept for VOXPLANE_CALLS_LOOKUP_TTL seconds (1 by default), off-net answers too: asking for each
of a batch cost the worker more than the rest of sending it. So a number acquired, released or given
another messaging webhook takes effect for messages up to that long later.
"""

from __future__ import annotations

from voxplane import AsyncNumbers, InvalidArgumentError, NotFoundError, VoxplaneError

from ..calls.directory import Services
from ..core import tls
from ..core.errors import Unavailable
from .delivery import OnNet


class NumbersDirectory:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.services = Services(endpoint, endpoint)  # Calls' directory; Messaging asks only of numbers
        self.numbers = AsyncNumbers(endpoint=endpoint, max_attempts=2, **tls.client_options(endpoint))

    async def owns_number(self, api_key: str, workspace_ref: str, time_remaining: float | None, e164: str) -> bool:
        return await self.services.directory(api_key, workspace_ref, time_remaining).owns_number(e164)

    async def route(self, service_key: str, ref: str, e164: str) -> OnNet | None:
        """Where the SMS `ref` to `e164` goes on-net; None when no workspace holds the number ACTIVE."""
        found = await self.services.answers.get(
            ("", "messaging route", e164), lambda: self._route(service_key, e164), lambda _: True
        )
        return None if found is None else OnNet(ref, *found)

    async def _route(self, service_key: str, e164: str) -> tuple[str, str | None] | None:
        try:
            found = await self.numbers.with_api_key(service_key).get_messaging_route(e164)
        except (NotFoundError, InvalidArgumentError):
            return None
        except VoxplaneError as error:
            raise Unavailable(f"The Numbers service at {self.endpoint} could not be asked ({error.code.name}).") from None
        return found.workspace_ref, found.messaging_webhook or None

    async def close(self) -> None:
        await self.services.close()
        await self.numbers.close()
