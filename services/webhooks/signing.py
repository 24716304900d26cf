"""Standard Webhooks signatures (https://www.standardwebhooks.com), made with the `standardwebhooks`
package so that any receiver using it (PyPI, npm) verifies them.

A secret is `whsec_` and the base64 of 32 random bytes. During a rotation a delivery carries one
signature per valid secret, space-separated (`v1,<new> v1,<previous>`), as the scheme allows.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, event_id: str, timestamp: datetime, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of id.timestamp.body>` under `secret`."""
    return Webhook(secret).sign(event_id, timestamp, body)


def signed_headers(event_id: str, timestamp: datetime, body: str, keys: Sequence[str]) -> dict[str, str]:
    """The three headers of a delivery signed with every secret of `keys` (current first)."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signature(key, event_id, timestamp, body) for key in keys),
    }
