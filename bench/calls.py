"""Calls history: ListCalls page cost, first page against deep pages of a large history.

Migrates a database (by default a SQLite file in a temporary folder), bulk-inserts `--calls` ended
calls for one workspace with SQLAlchemy Core, serves the Calls service in this process (grpc.aio on a
thread of its own), and times ListCalls with the blocking client: page 1, and pages 10, 1,000 and
10,000 (of `--page-size` calls) reached with the tokens the server would have issued there (signed
with the deployment's own page-token key, so the server cannot tell them from walked ones). Each page
also runs with a filter (starred calls). Prints the median and p99 of `--repeat` requests per page
and PASS/FAIL on "page cost flat from the first page to page 10,000": the deepest page's median at
most 2x the first page's. It measures, it does not judge: the exit status is 0 whatever the figures.

Not measured here (another part of the issue, not built yet): 200 calls/s created and driven to
completion through the simulated gateway, and CreateCall's p99 at that rate.

    .venv/bin/python bench/calls.py [--calls 1000000] [--page-size 20] [--repeat 200]
                                    [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert, select

from voxplane import Calls
from voxplane.services.app import build_server
from voxplane.services.calls import history
from voxplane.services.calls.models import Call
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Caller, Role
from voxplane.services.core.server import page_tokens
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.migrate import upgrade

MAX_DEEP_OVER_FIRST = 2.0  # "page cost flat": the deepest page may cost at most twice the first
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def load(db: Database, workspace_id: int, count: int) -> None:
    """`count` ended calls, every other one starred, 10,000 rows per INSERT ... executemany."""
    prefix = secrets.token_hex(4)
    started = time.perf_counter()
    for start in range(0, count, 10_000):
        rows = [
            {
                "ref": f"{prefix}{i:08x}", "workspace_id": workspace_id, "from_party": "+14155550100",
                "to_party": f"+1415555{i % 10_000:04d}", "caller_id": "", "device_id": "", "direction": "OUTBOUND",
                "status": "COMPLETED", "hangup_cause": "NORMAL_CLEARING", "muted": False, "on_hold": False,
                "recording": False, "timeout_seconds": 30, "metadata": {}, "create_time": T0 + timedelta(seconds=i),
                "update_time": T0 + timedelta(seconds=i), "answer_time": T0 + timedelta(seconds=i + 5),
                "end_time": T0 + timedelta(seconds=i + 65), "starred": i % 2 == 0, "archived": False, "read": False,
                "note": "", "version": 1,
            }
            for i in range(start, min(count, start + 10_000))
        ]
        db.transaction(lambda session, rows=rows: session.execute(insert(Call.__table__), rows), write=True)
        done = min(count, start + 10_000)
        print(f"\rloading calls: {done:,}/{count:,} ({done / (time.perf_counter() - started):,.0f}/s)",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


class ServedCalls:
    """The Calls service on an ephemeral port, on an event loop thread of its own."""

    def __init__(self, url: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> int:
            self.server = build_server(["calls"], Database(url, threads=4))
            return await self.server.start("127.0.0.1", 0)

        self.address = f"127.0.0.1:{asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def timed(calls: Calls, request: dict, repeat: int) -> tuple[float, float, int]:
    """(median ms, p99 ms, calls on the page) of `repeat` ListCalls requests."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = calls.list_calls(request)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))], len(page.calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--database-url", help="an empty database to migrate and use (default: a SQLite file)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        url = args.database_url or f"sqlite:///{Path(workdir) / 'calls.db'}"
        upgrade(url)
        db = Database(url, threads=2)
        ws, key = db.transaction(
            lambda s: (w := workspaces.create_workspace(s, f"bench-{secrets.token_hex(4)}"),
                       workspaces.create_key(s, w, Role.READER)), write=True,
        )
        workspace_id = ws.id
        load(db, workspace_id, args.calls)
        newest = db.transaction(lambda s: s.scalar(select(Call.id).order_by(Call.id.desc()).limit(1)), write=False)
        tokens = page_tokens(db)
        caller = Caller("bench", Role.READER, workspace_id, ws.ref)
        served = ServedCalls(url)
        print(f"\n{args.calls:,} calls, {args.page_size} a page, {args.repeat} requests a page, {url.split(':')[0]}")
        print(f"{'filter':<10}{'page':>8}{'median ms':>12}{'p99 ms':>10}{'calls':>8}")
        verdicts = []
        try:
            with Calls(endpoint=served.address, api_key=key) as calls:
                for name, raw, wire, per_row in (
                    ("none", history.CallFilter(), {}, 1), ("starred", history.CallFilter(starred=True),
                                                            {"starred": True}, 2),
                ):
                    first = None
                    deepest = max(1, min(10_000, args.calls // per_row // args.page_size))
                    for page in sorted({p for p in (1, 10, 1_000, deepest) if p <= deepest}):
                        # Page p starts after the (p - 1) * size newest matching calls; ids are contiguous.
                        skipped = (page - 1) * args.page_size * per_row
                        token = tokens.issue(history.scope(caller, raw), newest - skipped + 1) if page > 1 else ""
                        request = {"filter": wire, "page_size": args.page_size, "page_token": token}
                        median, p99, got = timed(calls, request, args.repeat)
                        first = first or median
                        print(f"{name:<10}{page:>8,}{median:>12.2f}{p99:>10.2f}{got:>8}")
                    verdicts.append((name, deepest, median / first))
        finally:
            served.stop()
            db.close()
    for name, deepest, ratio in verdicts:
        ok = ratio <= MAX_DEEP_OVER_FIRST
        print(f"{'PASS' if ok else 'FAIL'}  filter {name}: page {deepest:,} costs {ratio:.2f}x page 1 "
              f"(target <= {MAX_DEEP_OVER_FIRST:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
