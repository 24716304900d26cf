"""The base of every servicer and of the mixins a servicer is assembled from."""

from __future__ import annotations

from typing import ClassVar

from ..persistence.db import Database
from .paging import PageTokens
from .ratelimits import RequestLimiter


class Servicer:
    """What every RPC method reaches through `self`: `db`, which the rpc decorator runs it on, the
    `limiter` it takes each request's token from, and the `tokens` that sign list pages. `service_name` is the full name of the proto service, for the logs."""

    service_name: ClassVar[str]

    def __init__(self, db: Database, tokens: PageTokens):
        self.db = db
        self.limiter = RequestLimiter.of(db)  # one per process and database, shared by its servicers
        self.tokens = tokens
