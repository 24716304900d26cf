"""SIP digest credentials (RFC 2617 / RFC 7616 HA1) as a SIP proxy's auth table stores them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Digests:
    ha1: str
    ha1b: str
    ha1_sha256: str
    ha1b_sha256: str


def digests(username: str, domain: str, secret: str) -> Digests:
    """HA1 for `username` and for `username@domain` (clients that send the domain in the user)."""
    plain = f"{username}:{domain}:{secret}".encode()
    with_domain = f"{username}@{domain}:{domain}:{secret}".encode()
    return Digests(
        ha1=hashlib.md5(plain, usedforsecurity=False).hexdigest(),
        ha1b=hashlib.md5(with_domain, usedforsecurity=False).hexdigest(),
        ha1_sha256=hashlib.sha256(plain).hexdigest(),
        ha1b_sha256=hashlib.sha256(with_domain).hexdigest(),
    )
