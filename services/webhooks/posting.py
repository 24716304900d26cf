"""One signed POST of one event to one URL, and its reply: what the delivery worker does at each
attempt and what the Calls service does to let a webhook steer a call (`post_now`)."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx
from sqlalchemy.orm import Session

from ..events.models import Event
from ..persistence.base import utcnow
from ..persistence.db import Database
from . import egress
from .endpoints import endpoints_of
from .payloads import STANDARD, Body, render
from .signing import signed_headers
from .signing_keys import NO_SECRET, valid_secrets

MAX_REPLY_BYTES = 64 * 1024  # of a reply's body kept: a steering instruction is far smaller


@dataclass(frozen=True)
class Reply:
    """What came back from one POST. `error` says why no usable answer came (refused, no connection,
    timeout, a reply too large): then `status_code` is 0 unless an answer's status arrived."""

    status_code: int = 0
    content_type: str = ""
    body: bytes = b""
    error: str = ""
    # Seconds the receiver asked to wait (Retry-After of a 429 or 503); None if it did not say.
    retry_after: float | None = None
    # Not sent at all: the URL is invalid or its address is not allowed (no retry changes that).
    refused: bool = False
    # No answer (or not all of it) came within the timeout.
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status_code < 300


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - utcnow()).total_seconds())


async def post(
    poster: egress.Poster, url: str, event_id: str, body: Body, secrets: list[str], *, timeout: float,
    now: datetime | None = None,
) -> Reply:
    """POSTs `body` signed with `secrets`, waiting `timeout` seconds at most in all."""
    headers = {"content-type": body.content_type, **signed_headers(event_id, now or utcnow(), body.text, secrets)}
    try:
        async with asyncio.timeout(timeout):
            async with poster.post(url, body.text.encode(), headers) as answer:
                content = bytearray()
                async for chunk in answer.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_REPLY_BYTES:
                        return Reply(answer.status_code, error=f"the reply is larger than {MAX_REPLY_BYTES} bytes")
    except egress.Refused as refused:
        return Reply(error=str(refused), refused=True)
    except (TimeoutError, httpx.TimeoutException):
        return Reply(error=f"no answer within {timeout:g} s", timed_out=True)
    except httpx.InvalidURL as error:
        return Reply(error=f"the URL is not valid: {error}", refused=True)
    except httpx.HTTPError as error:
        return Reply(error=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    return Reply(
        answer.status_code, answer.headers.get("content-type", ""), bytes(content),
        retry_after=_retry_after(answer.headers.get("retry-after")),
    )


_posters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, egress.Poster] = weakref.WeakKeyDictionary()


def shared_poster() -> egress.Poster:
    """This event loop's guarded poster, for the posts made outside the worker (steering)."""
    loop = asyncio.get_running_loop()
    poster = _posters.get(loop)
    if poster is None:
        poster = _posters[loop] = egress.Poster()
    return poster


@dataclass(frozen=True)
class _Target:
    secrets: list[str]
    payload_format: str
    refusal: str = ""


def _target(session: Session, workspace_id: int, url: str) -> _Target:
    secrets = valid_secrets(session, [workspace_id]).get(workspace_id, [])
    endpoint = endpoints_of(session, [(workspace_id, url)]).get((workspace_id, url))
    if not secrets:
        return _Target([], STANDARD, NO_SECRET)
    if endpoint is None:
        return _Target(secrets, STANDARD)
    refusal = "" if endpoint.enabled else f"the endpoint is disabled: {endpoint.disabled_reason}"
    return _Target(secrets, endpoint.payload_format, refusal)


async def post_now(db: Database, workspace_id: int, url: str, event: Event, *, timeout: float) -> Reply:
    """POSTs `event` to `url` once, now, as the workspace's endpoint for `url` wants it (signed, in its
    payload format, refused if disabled or if the address is not allowed), and returns the reply
    within `timeout` seconds. Not retried and not recorded: the caller decides what a failure means
    (the event's own delivery, through the outbox, is retried as any other)."""
    target = await db.run_transaction(lambda s: _target(s, workspace_id, url), write=False)
    if target.refusal:
        return Reply(error=target.refusal, refused=True)
    body = render(event, target.payload_format)
    if body is None:
        return Reply(error=f"the endpoint's payload format ({target.payload_format}) has no {event.type} event", refused=True)
    return await post(shared_poster(), url, event.ref, body, target.secrets, timeout=timeout)
