"""The base of every servicer and of the mixins a servicer is assembled from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..persistence.db import Database
from .metrics import Reading, prepare
from .paging import PageTokens
from .ratelimits import RequestLimiter


class Servicer:
    """What every RPC method reaches through `self`: `db`, which the rpc decorator runs it on, the
    `limiter` it takes each request's token from, and the `tokens` that sign list pages. `service_name`
    is the full name of the proto service, for the logs; `rpc_metrics` what the rpc decorator counts each
    method's calls in."""

    service_name: ClassVar[str]

    def __init__(self, db: Database, tokens: PageTokens):
        self.db = db
        self.limiter = RequestLimiter.of(db)  # one per process and database, shared by its servicers
        self.tokens = tokens
        self.rpc_metrics = prepare(self.service_name)

    def metrics(self) -> Sequence[Reading]:
        """What the service reads from the database for /metrics, when scraped (none by default)."""
        return ()
