"""Who shows as the caller of a new call: every number and agent it names checked, then sipgate's order."""

from __future__ import annotations

import asyncio

from ..core.errors import Violations
from .live import NewCall
from .parties import Agent, Directory


async def caller_id_of(new: NewCall, directory: Directory) -> tuple[str, Agent | None]:
    """Checks every number and agent the call names against the workspace, then picks the caller ID.
    Returns it and the agent whose phone rings first (the device, else the `source` agent).

    Every valid combination of sipgate's table is accepted (an agent `source`
    with or without caller_id / device_id; a number `source` with device_id,
    with or without caller_id; `checked_new_call` refused the rest). The
    caller ID is `caller_id`, else the device agent's number, else `source`'s
    number; "" (anonymous) when none applies.
    """
    v = Violations()

    async def number(field: str, e164: str) -> None:
        if e164 and not await directory.owns_number(e164):
            v.add(field, f"{e164} is not an active number of this workspace")

    async def agent(field: str, ref: str) -> Agent | None:
        if not ref:
            return None
        found = await directory.agent(ref)
        if found is None:
            v.add(field, f"{ref!r} is not an agent of this workspace")
        elif not found.enabled:
            v.add(field, f"the agent {ref} is disabled")
            return None
        return found

    _, _, from_agent, device = await asyncio.gather(
        number("source", new.source if new.source_is_number else ""),
        number("caller_id", new.caller_id),
        agent("source", "" if new.source_is_number else new.source),
        agent("device_id", new.device_id),
    )
    v.raise_if_any()
    rings_first = device or from_agent
    if new.caller_id:
        return new.caller_id, rings_first
    for candidate in (device, from_agent):
        if candidate is not None and (found := await directory.agent_number(candidate)):
            return found, rings_first
    return (new.source if new.source_is_number else ""), rings_first
