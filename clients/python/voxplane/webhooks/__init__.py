"""For receivers of voxplane's webhooks: `verify` checks a delivery's Standard Webhooks signature.

    from voxplane.webhooks import VerificationError, verify
    try:
        verify(request.headers, request.body, "whsec_...")
    except VerificationError:
        return 400

(The generated `voxplane.webhooks.v1` beside it is the Webhooks service's contract.)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from datetime import datetime, timezone

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

__all__ = ["VerificationError", "verify"]


class VerificationError(Exception):
    """The delivery is not one signed with the secret: missing or malformed headers, a timestamp
    outside the tolerance, or no matching signature."""


def verify(headers: Mapping[str, str], body: bytes | str, secret: str, tolerance: float = 300) -> None:
    """Returns if `body` with `headers` (`webhook-id`, `webhook-timestamp`, `webhook-signature`) was
    signed with `secret` (`whsec_…`) at most `tolerance` seconds from now; raises VerificationError
    otherwise. During a rotation a delivery carries a signature per valid secret: either one passes."""
    lowered = {name.lower(): value for name, value in headers.items()}
    event_id, stamp, signatures = (lowered.get(f"webhook-{n}", "") for n in ("id", "timestamp", "signature"))
    if not (event_id and stamp and signatures):
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        sent = int(stamp)
    except ValueError:
        raise VerificationError(f"webhook-timestamp {stamp!r} is not a number of seconds") from None
    if abs(time.time() - sent) > tolerance:
        raise VerificationError(f"webhook-timestamp is more than {tolerance:g} seconds from now")
    try:
        text = body.decode() if isinstance(body, bytes) else body
        expected = Webhook(secret).sign(event_id, datetime.fromtimestamp(sent, timezone.utc), text).partition(",")[2]
    except (UnicodeDecodeError, binascii.Error, ValueError, EmptyWebhookSecretError) as error:
        raise VerificationError(f"cannot check the signature: {error}") from None
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and _same(value, expected):
            return
    raise VerificationError("no signature matches the secret")


def _same(given: str, expected: str) -> bool:
    try:
        return hmac.compare_digest(base64.b64decode(given, validate=True), base64.b64decode(expected))
    except (binascii.Error, ValueError):
        return False
