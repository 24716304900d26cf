"""List paging: page sizes and signed, opaque keyset page tokens.

A token carries the id of the last row served and an HMAC over it and the
token's scope (which list, which workspace, which filter). A token that was
altered, or replayed against another list or filter, fails the HMAC check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
_MAC_BYTES = 12

T = TypeVar("T")
K = TypeVar("K")


def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument.of(field, f"must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class PageTokens:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, scope: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, scope.encode() + b"\0" + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, scope: str, position: object) -> str:
        """A token for the page after `position` (the last id, or key, served)."""
        payload = str(position).encode()
        return base64.urlsafe_b64encode(self._mac(scope, payload) + payload).decode().rstrip("=")

    def read(self, scope: str, token: str) -> str | None:
        """The position this token continues after; None for an empty token (the first page)."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
            if hmac.compare_digest(mac, self._mac(scope, payload)):
                return payload.decode()
        except ValueError:
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
