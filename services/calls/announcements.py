"""Fetching an announcement to play into a call (PlayAudio on the SIP network): the caller chose the URL and
the server fetches it, so it goes through the webhooks' address guard (webhooks/egress.py: no loopback,
private or metadata address unless VOXPLANE_WEBHOOK_ALLOW allows it, no redirect followed), its size is
bounded while it is read, and only a WAV file is taken."""

from __future__ import annotations

import asyncio

import httpx

from ..core import config
from ..core.errors import FailedPrecondition, PermissionDenied, Unavailable
from ..webhooks import egress
from .audio import WAV_TYPES, wav_problem

FETCH_TIMEOUT = 10.0  # seconds for the whole fetch


async def fetch_wav(url: str, poster: egress.Poster) -> bytes:
    """The WAV file at `url`. PERMISSION_DENIED for an address the guard refuses; FAILED_PRECONDITION for an
    answer that is an HTTP error, not a WAV file, or larger than VOXPLANE_PLAY_MAX_BYTES; UNAVAILABLE when
    it does not answer (in time)."""
    limit = config.settings().play_max_bytes
    try:
        async with asyncio.timeout(FETCH_TIMEOUT), poster.get(url) as response:
            if response.status_code != 200:
                raise FailedPrecondition(f"The audio URL answered HTTP {response.status_code}, not 200 with a WAV file.")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind not in WAV_TYPES:
                raise FailedPrecondition(
                    f"The audio URL serves {kind or 'no content type'!r}; only WAV is played "
                    f"({', '.join(sorted(WAV_TYPES))})."
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise FailedPrecondition(f"The audio at the URL is {declared} bytes; at most {limit} are played.")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    raise FailedPrecondition(f"The audio at the URL is larger than {limit} bytes, the most played.")
    except egress.Refused as refused:
        raise PermissionDenied(f"The audio URL is refused: {refused}.") from None
    except TimeoutError:
        raise Unavailable(f"The audio URL did not answer within {FETCH_TIMEOUT:g} s.") from None
    except httpx.HTTPError as error:
        raise Unavailable(f"The audio URL could not be fetched: {error or type(error).__name__}.") from None
    problem = wav_problem(bytes(data))
    if problem is not None:
        raise FailedPrecondition(f"The audio at the URL cannot be played: {problem}.")
    return bytes(data)
