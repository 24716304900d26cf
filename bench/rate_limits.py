"""The request rate limit's cost per RPC: the in-memory fast path, and a lease amortised over its batch.

Migrates a SQLite file in a temporary folder (or `--database-url`), makes a workspace, then with the
servers' own RequestLimiter at the default limit (VOXPLANE_RATE_LIMIT_REQUESTS, batches of a twentieth):
- the fast path, `admit_now` with tokens in the bucket: CPU per request over an empty call;
- a lease (`admit` on an empty bucket: one upsert on the database threads): wall time, and that time
  spread over the batch it brings.

    .venv/bin/python bench/rate_limits.py [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from voxplane.services.core import config, workspaces
from voxplane.services.core.ratelimits import RequestLimiter
from voxplane.services.persistence.base import new_ref
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.migrate import upgrade

LOOPS = 200_000


def cpu_ns(step: Callable[[], object]) -> float:
    """The best of 7 runs of LOOPS `step()`, in CPU nanoseconds per call."""
    best = math.inf
    for _ in range(7):
        started = time.process_time()
        for _ in range(LOOPS):
            step()
        best = min(best, time.process_time() - started)
    return best / LOOPS * 1e9


async def bench(url: str) -> None:
    db = Database(url, threads=2)
    try:
        workspace = db.transaction(lambda s: workspaces.create_workspace(s, f"bench-{new_ref()}"), write=True)
        limiter = RequestLimiter(db)
        limit = config.settings().rate_limit_requests
        batch = max(1, math.ceil(limit / 20))

        leases = []
        for _ in range(20):
            limiter._buckets.pop(workspace.id, None)  # an empty bucket: the next admit leases
            started = time.perf_counter()
            await limiter.admit(workspace.id)
            leases.append(time.perf_counter() - started)
        lease = sorted(leases)[len(leases) // 2]

        bucket = limiter._buckets[workspace.id]

        def fast() -> None:
            if not limiter.admit_now(workspace.id):  # the batch is spent: the bench refills it by hand
                bucket.tokens, bucket.expires = 1 << 60, time.time() + 3600

        fast()
        overhead = cpu_ns(fast) - cpu_ns(lambda: None)
        print(f"limit {limit:,} requests/s, leases of {batch:,} tokens")
        print(f"fast path: {overhead:,.0f} ns CPU per request (over an empty call)")
        print(f"lease: {lease * 1e3:.2f} ms wall (median of 20), {lease / batch * 1e9:,.0f} ns per request of its batch")
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        asyncio.run(bench(url))


if __name__ == "__main__":
    main()
