"""Webhook deliveries: the targets of issue 11, measured (bench/events.py --deliveries runs this).

One `voxplane serve webhooks` process (a delivery worker, at VOXPLANE_LOG_LEVEL=WARNING) and one
local receiver (asyncio HTTP/1.1 with keep-alive, in this process), on a migrated SQLite file in a
temporary folder (or `--database-url`). Events are stored with the outbox's own `append`, as the
Calls service stores them, each naming the receiver as its call's webhook. Three parts, in order:

  backlog   `--backlog` events (100,000) of `--calls` calls stored before the server starts: the
            time from its start to the last acknowledgement, and the drain rate (target: at least
            1,000 deliveries/s);
  live      events produced at `--rate` per second (200) for `--duration` seconds, each stamped with
            the time it was stored: p50/p99/max from that to its arrival (target: p99 under 500 ms);
  outage    the receiver goes down (connections refused) for `--outage` seconds while events keep
            coming, then comes back: every event must arrive, each acknowledged exactly once.

It prints figures and PASS/FAIL; the exit status is 0 whatever the figures, nonzero only when
something breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from ingress import BenchError, ServerProcess, cli, voxplane_command  # bench/ingress.py

from voxplane.services.core import workspaces
from voxplane.services.events import outbox
from voxplane.services.persistence.base import new_ref, utcnow
from voxplane.services.persistence.db import Database
from voxplane.services.webhooks import signing_keys

MIN_DRAIN_PER_SECOND = 1000
MAX_P99_MS = 500
WORKSPACE = "bench-webhooks"


class Receiver:
    """A minimal HTTP/1.1 server: answers 200 to every POST, recording each arrival; `down()` refuses
    connections (and drops the open ones) until `up()`."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float, float]] = []  # (event id, arrival, stored at)
        self.acknowledged: Counter[str] = Counter()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.arrived = asyncio.Event()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.split(": ", 1) for line in head.decode("latin-1").lower().split("\r\n")[1:] if ": " in line
                )
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                now = time.time()
                stored = datetime.fromisoformat(json.loads(body)["timestamp"]).timestamp()
                event_id = headers["webhook-id"]
                self.arrivals.append((event_id, now, stored))
                self.acknowledged[event_id] += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                self.arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, the receiver went down, or the bench ended
        finally:
            self._writers.discard(writer)
            writer.close()

    async def wait_for(self, event_ids: set[str], timeout: float) -> bool:
        """Until every one of `event_ids` has arrived; False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not event_ids <= self.acknowledged.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(left, 1))
            except TimeoutError:
                pass
        return True


def store(db: Database, workspace_id: int, url: str, calls: list[str], sequences: dict[str, int], count: int) -> list[str]:
    """Appends `count` events, round-robin over `calls`, stamped now; returns their ids."""
    def write(session):  # type: ignore[no-untyped-def]
        events = []
        now = utcnow()
        for n in range(count):
            call = calls[n % len(calls)]
            sequences[call] = sequences.get(call, 0) + 1
            events.append(outbox.NewEvent(workspace_id, "call", call, sequences[call], "ANSWER", now, "OUTBOUND", url,
                                          {"source": "+14155550100", "destination": "+14155550111"}))
        return outbox.append(session, events)

    return db.transaction(write, write=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction) - 1)]


async def produce(db: Database, workspace_id: int, url: str, rate: int, seconds: float) -> list[str]:
    """Events at `rate` per second for `seconds`, ten batches a second, over `rate` calls."""
    calls = [new_ref() for _ in range(rate)]
    sequences: dict[str, int] = {}
    made: list[str] = []
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    batches = int(seconds * 10)
    for batch in range(batches):
        made += await loop.run_in_executor(None, store, db, workspace_id, url, calls, sequences, rate // 10)
        await asyncio.sleep(max(0.0, start + (batch + 1) / 10 - time.monotonic()))
    return made


async def run(args: argparse.Namespace, url: str, workdir: Path, env: dict[str, str]) -> bool:
    db = Database(url, threads=2)
    receiver = Receiver()
    await receiver.up()
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    workspace = db.transaction(lambda s: workspaces.create_workspace(s, f"{WORKSPACE}-{secrets.token_hex(3)}"), write=True)
    db.transaction(lambda s: signing_keys.create(s, workspace.id), write=True)

    started = time.monotonic()
    calls = [new_ref() for _ in range(args.calls)]
    backlog: list[str] = []
    sequences: dict[str, int] = {}
    while len(backlog) < args.backlog:
        backlog += store(db, workspace.id, hook, calls, sequences, min(5000, args.backlog - len(backlog)))
    print(f"stored a backlog of {len(backlog):,} events over {args.calls:,} calls in {time.monotonic() - started:.1f} s")

    server = ServerProcess("webhooks", [*voxplane_command(), "serve", "webhooks"], env, workdir / "server.log")
    try:
        serving = time.monotonic()
        drained = await receiver.wait_for(set(backlog), timeout=args.backlog / 20 + 60)
        if not drained:
            raise BenchError(f"the backlog did not drain: {len(receiver.acknowledged):,} of {len(backlog):,}\n"
                             + server.log_tail())
        arrivals = [t for _, t, _ in receiver.arrivals]
        whole = time.monotonic() - serving
        rate = len(backlog) / (max(arrivals) - min(arrivals))
        duplicates = sum(n - 1 for n in receiver.acknowledged.values())
        drain_ok = rate >= MIN_DRAIN_PER_SECOND
        print(f"backlog: {len(backlog):,} deliveries in {whole:.1f} s from the server's start (its start-up "
              f"included); {rate:,.0f} deliveries/s from the first to the last; {duplicates} delivered twice")
        print(f"  {'PASS' if drain_ok else 'FAIL'}: drain {rate:,.0f}/s (target: at least {MIN_DRAIN_PER_SECOND:,}/s)")

        receiver.arrivals.clear()
        live = await produce(db, workspace.id, hook, args.rate, args.duration)
        await receiver.wait_for(set(live), timeout=60)
        delays = [(arrived - stored) * 1000 for event_id, arrived, stored in receiver.arrivals]
        p99 = percentile(delays, 0.99)
        live_ok = p99 < MAX_P99_MS and set(live) <= receiver.acknowledged.keys()
        print(f"live: {len(live):,} events at {args.rate}/s for {args.duration:g} s; stored -> arrival: "
              f"p50 {statistics.median(delays):.0f} ms, p99 {p99:.0f} ms, max {max(delays):.0f} ms")
        print(f"  {'PASS' if live_ok else 'FAIL'}: p99 {p99:.0f} ms (target: under {MAX_P99_MS} ms)")

        await receiver.down()
        during = await produce(db, workspace.id, hook, args.rate, args.outage)
        back = time.monotonic()
        await receiver.up()
        complete = await receiver.wait_for(set(during), timeout=120)
        recovered = time.monotonic() - back
        once = all(receiver.acknowledged[e] == 1 for e in during)
        outage_ok = complete and once
        print(f"outage: receiver down {args.outage:g} s while {len(during):,} events were stored; back up, it had "
              f"them all {recovered:.1f} s later: {'yes' if complete else 'NO'}; each acknowledged once: "
              f"{'yes' if once else 'NO'}")
        print(f"  {'PASS' if outage_ok else 'FAIL'}: every event delivered after the outage, none twice")
        print(f"server: peak RSS {server.peak_rss_mb():.0f} MB, {server.cpu_seconds():.1f} s of CPU")
        return drain_ok and live_ok and outage_ok
    finally:
        server.stop()
        db.close()


def deliveries(args: argparse.Namespace) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="voxplane-bench-deliveries-"))
    url = args.database_url or f"sqlite:///{workdir / 'voxplane.db'}"
    env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_LOG_LEVEL": "WARNING", "VOXPLANE_SHUTDOWN_GRACE": "1",
           "VOXPLANE_WEBHOOK_ALLOW": "127.0.0.1", "VOXPLANE_WEBHOOK_RETRY_SCHEDULE": json.dumps([0.5] * 100)}
    print(f"deliveries: {url.split(':')[0]}; Python {platform.python_version()}, {os.cpu_count()} CPUs")
    try:
        cli(env, "migrate")
        return asyncio.run(run(args, url, workdir, env))
    finally:
        if args.keep:
            print(f"kept {workdir} (server log, SQLite database)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("deliveries")
    group.add_argument("--backlog", type=int, default=100_000, help="events stored before the server starts")
    group.add_argument("--calls", type=int, default=2_000, help="calls the backlog's events belong to")
    group.add_argument("--rate", type=int, default=200, help="events per second in the live and outage parts")
    group.add_argument("--duration", type=float, default=10, help="seconds of the live part")
    group.add_argument("--outage", type=float, default=5, help="seconds the receiver is down")
