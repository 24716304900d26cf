"""List paging: page sizes and opaque, encrypted keyset page tokens.

A token carries the key of the last row served (an id, an E.164 number, a prefix), encrypted with
AES-GCM (the `cryptography` library) under a key derived from the deployment's page-token secret;
the token's scope (which list, which workspace, which filter) is its associated data. So a token
reveals nothing (not a row id, not another tenant's number), and one that was altered, or replayed
against another list, workspace or filter, fails to decrypt.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
_NONCE_BYTES = 12

T = TypeVar("T")
K = TypeVar("K")


def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument.of(field, f"must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class InvalidToken(ValueError):
    """A token that was altered, or issued for another scope."""


class PageTokens:
    def __init__(self, secret: bytes):
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"voxplane page tokens v1").derive(secret)
        self._aead = AESGCM(key)

    def issue(self, scope: str, position: object) -> str:
        """A token for the page after `position` (the key of the last row served)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, str(position).encode(), scope.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def unseal(self, scope: str, token: str) -> str:
        """The position a token `issue`d for `scope` holds; InvalidToken if it was not."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], scope.encode()).decode()
        except (ValueError, InvalidTag) as error:
            raise InvalidToken(str(error)) from None

    def read(self, scope: str, token: str) -> str | None:
        """The position this token continues after; None for an empty token (the first page)."""
        if not token:
            return None
        try:
            return self.unseal(scope, token)
        except InvalidToken:
            pass
        raise InvalidArgument.of(
            "page_token", "is not a token this list issued for this filter; start again from the first page"
        )

    def page(
        self, scope: str, request: Any, fetch: Callable[[K | None, int], tuple[Sequence[T], K | None]], *,
        key: Callable[[str], K] = int,  # type: ignore[assignment]  # int is a K
    ) -> tuple[Sequence[T], str]:
        """Serves one page of a List request: `fetch(after, size)` returns the rows after the key `after`
        (None: the first page) and the key of the last one if more follow. `key` reads a key back from
        a token (ids by default)."""
        size = page_size(request.page_size)
        position = self.read(scope, request.page_token)
        rows, last = fetch(key(position) if position is not None else None, size)
        return rows, self.issue(scope, last) if last is not None else ""
