"""Calls: CreateCall at a fixed rate through the simulated gateway, and ListCalls page cost.

Two parts (`--part create|pages|all`, default all). Each measures, it does not judge: the exit status is
0 whatever the figures, nonzero only when something breaks.

create: "at least 200 calls per second created and driven to completion through the simulated gateway,
with every state change persisted; p99 CreateCall latency under 50 ms at that rate". Migrates a SQLite
file in a temporary folder (or `--database-url`), and for each rate of `--rates` (default 200,300):
creates a workspace and a `member` key with the `voxplane` CLI, starts `voxplane serve all` as a
process of its own (short simulated delays, `--ring-delay` / `--answer-delay`), creates an agent with
the Agents API and uses it as `from`, and calls `--to` (default +15005550060: answers, then the far end
hangs up after 0 s). An open-loop generator (grpc.aio, the generated stub, one request_id per call as
the SDK sends) issues CreateCall every 1/rate s for `--duration` s, whatever the answers; latency runs
from when the request was due, so a late generator counts against the server, not for it. Then it polls
ListActiveCalls until none is left and reads the calls back from the database: final status, hangup
cause, answer_time / end_time stamped (every state change stored). Prints the achieved create rate,
completed calls/s (calls over first create -> last end_time), p50/p99/max CreateCall latency, the final
statuses, the server's CPU per call and peak RSS (VmHWM), and PASS/FAIL on the two targets.

pages: ListCalls page cost, first page against deep pages of a large history. Bulk-inserts `--calls`
ended calls for one workspace with SQLAlchemy Core, starts `voxplane serve calls` as a process of its
own (INFO logs), and times ListCalls with the blocking client from this one: page 1, and pages 10, 1,000 and
10,000 (of `--page-size` calls) reached with the tokens the server would have issued there (signed
with the deployment's own page-token key, so the server cannot tell them from walked ones). Each page
also runs with a filter (starred calls). Prints the median and p99 of `--repeat` requests per page
and PASS/FAIL on "page cost flat from the first page to page 10,000": the deepest page's median at
most 2x the first page's.

    .venv/bin/python bench/calls.py [--part create|pages|all] [--database-url postgresql://...]
        create: [--rates 200,300] [--duration 10] [--to +15005550060] [--ring-delay 0.01]
                [--answer-delay 0.01] [--log-level INFO] [--drain-timeout 120] [--keep]
        pages:  [--calls 1000000] [--page-size 20] [--repeat 200]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
from ingress import (  # bench/ingress.py: the same server process helpers
    BenchError,
    ServerExited,
    ServerProcess,
    busy_cpu_seconds,
    cli,
    voxplane_command,
)
from sqlalchemy import Table, insert, select

from voxplane import AsyncAgents, Calls, NotFoundError
from voxplane.calls.v1 import calls_pb2, calls_pb2_grpc
from voxplane.services.calls import history
from voxplane.services.calls.models import Call, CallLabel
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Caller, Role
from voxplane.services.core.server import page_tokens
from voxplane.services.persistence.db import Database, one_shot_engine
from voxplane.services.persistence.migrate import upgrade
from voxplane.services.persistence.tenancy import Workspace

STAYS_UP = "+15005550001"  # the simulated network answers it and nobody hangs up
MAX_SPARSE_PAGE_MS = 5.0  # page 1 of an exact-match filter that matches few calls (issue 10)
MAX_DEEP_OVER_FIRST = 2.0  # "page cost flat": the deepest page may cost at most twice the first
# The create part's targets, from the issue.
MIN_COMPLETED_PER_SECOND = 200.0
MAX_CREATE_P99_MS = 50.0
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def insert_rows(db: Database, table: Table, count: int, row: Callable[[int], dict[str, Any]], what: str) -> None:
    """`count` rows `row(i)` into `table`, 10,000 per INSERT ... executemany, with progress on stderr."""
    started = time.perf_counter()
    for start in range(0, count, 10_000):
        rows = [row(i) for i in range(start, min(count, start + 10_000))]
        db.transaction(lambda session, rows=rows: session.execute(insert(table), rows), write=True)
        done = min(count, start + 10_000)
        print(f"\rloading {what}: {done:,}/{count:,} ({done / (time.perf_counter() - started):,.0f}/s)",
              end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def load(db: Database, workspace_id: int, count: int) -> None:
    """`count` ended calls, every other one starred."""
    prefix = secrets.token_hex(4)
    insert_rows(db, Call.__table__, count, lambda i: {
        "ref": f"{prefix}{i:08x}", "workspace_id": workspace_id, "from_party": "+14155550100",
        "to_party": f"+1415555{i % 10_000:04d}", "caller_id": "", "device_id": "", "direction": "OUTBOUND",
        "status": "COMPLETED", "hangup_cause": "NORMAL_CLEARING", "muted": False, "on_hold": False,
        "recording": False, "timeout_seconds": 30, "metadata": {}, "create_time": T0 + timedelta(seconds=i),
        "update_time": T0 + timedelta(seconds=i), "answer_time": T0 + timedelta(seconds=i + 5),
        "end_time": T0 + timedelta(seconds=i + 65), "starred": i % 2 == 0, "archived": False, "read": False,
        "note": "", "version": 1,
    }, "calls")


def serve_one(service: str, url: str, workdir: Path) -> ServerProcess:
    """`voxplane serve <service>` on `url`, a process of its own (INFO logs), once it answers."""
    env = {"VOXPLANE_LOG_LEVEL": "INFO", **os.environ, "VOXPLANE_DATABASE_URL": url}
    server = ServerProcess(service, [*voxplane_command(), "serve", service], env, workdir / f"{service}.log")
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(server.address) as channel:
        while True:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return server
            except grpc.FutureTimeoutError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise ServerExited(f"{service} exited or never served:\n{server.log_tail()}") from None


def timed_rpc(call: Callable[[], Any], repeat: int) -> float:
    """Median ms of `repeat` calls of `call`."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def get_missing(calls: Calls) -> None:
    """A GetCall that finds nothing: no page to build, what any call costs."""
    try:
        calls.get_call("0" * 28)
    except NotFoundError:
        pass


def timed(list_page: Callable[[dict], Any], request: dict, repeat: int) -> tuple[float, float, int]:
    """(median ms, p99 ms, items on the page) of `repeat` List requests `list_page(request)`; a page's
    items are its one repeated field (calls, numbers)."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = list_page(request)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    items = next(getattr(page, field.name) for field in page.DESCRIPTOR.fields if field.is_repeated)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))], len(items)


def reader_workspace(url: str) -> tuple[Database, Workspace, str]:
    """The migrated database at `url`, a new workspace in it, and a reader key of that workspace."""
    upgrade(url)
    db = Database(url, threads=2)
    ws, key = db.transaction(
        lambda s: (w := workspaces.create_workspace(s, f"bench-{secrets.token_hex(4)}"),
                   workspaces.create_key(s, w, Role.READER)), write=True,
    )
    return db, ws, key


def pages(args: argparse.Namespace) -> None:
    """The page-cost part."""
    with tempfile.TemporaryDirectory() as workdir:
        url = args.database_url or f"sqlite:///{Path(workdir) / 'calls.db'}"
        db, ws, key = reader_workspace(url)
        workspace_id = ws.id
        load(db, workspace_id, args.calls)
        newest = db.transaction(lambda s: s.scalar(select(Call.id).order_by(Call.id.desc()).limit(1)), write=False)
        tokens = page_tokens(db)
        caller = Caller("bench", Role.READER, workspace_id, ws.ref)
        served = serve_one("calls", url, Path(workdir))
        print(f"\n{args.calls:,} calls, {args.page_size} a page, {args.repeat} requests a page, {url.split(':')[0]}")
        print(f"{'filter':<10}{'page':>8}{'median ms':>12}{'p99 ms':>10}{'calls':>8}")
        verdicts = []
        sparse: list[tuple[str, float]] = []
        db.transaction(lambda s: s.execute(insert(CallLabel.__table__), [
            {"call_id": call_id, "label": "sparse"} for call_id in random.sample(range(newest - args.calls + 1, newest + 1), 40)
        ]), write=True)
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
                        median, p99, got = timed(calls.list_calls, request, args.repeat)
                        first = first or median
                        print(f"{name:<10}{page:>8,}{median:>12.2f}{p99:>10.2f}{got:>8}")
                    verdicts.append((name, deepest, median / first))
                # What any call costs on this machine: a GetCall that finds nothing (no page to build).
                floor = timed_rpc(lambda: get_missing(calls), args.repeat)
                print(f"{'(floor)':<10}{'':>8}{floor:>12.2f}{'':>10}{'':>8}  GetCall of a missing ref, for comparison")
                active = timed_rpc(calls.list_active_calls, args.repeat)
                print(f"{'(active)':<10}{'':>8}{active:>12.2f}{'':>10}{'':>8}  ListActiveCalls: none active among them all")
                # Sparse filters: a number on 1 call in 10,000 (the load's destinations cycle), a label on 40.
                for name, wire in (("party", {"party": "+14155550042"}), ("label", {"label": "sparse"})):
                    median, p99, got = timed(calls.list_calls, {"filter": wire, "page_size": args.page_size}, args.repeat)
                    print(f"{name:<10}{1:>8,}{median:>12.2f}{p99:>10.2f}{got:>8}")
                    sparse.append((name, median))
        finally:
            served.stop()
            db.close()
    for name, median in sparse:
        print(f"{'PASS' if median < MAX_SPARSE_PAGE_MS else 'FAIL'}  sparse filter {name}: page 1 {median:.2f} ms "
              f"(target < {MAX_SPARSE_PAGE_MS:.0f} ms)")
    for name, deepest, ratio in verdicts:
        ok = ratio <= MAX_DEEP_OVER_FIRST
        print(f"{'PASS' if ok else 'FAIL'}  filter {name}: page {deepest:,} costs {ratio:.2f}x page 1 "
              f"(target <= {MAX_DEEP_OVER_FIRST:.0f}x)")


# --- create: CreateCall at a fixed rate, driven to completion by the simulated gateway -----------------


@dataclass
class CreateRun:
    rate: float  # offered, calls/s
    offered: int
    latencies_ms: list[float] = field(default_factory=list)  # from when each request was due
    errors: Counter[str] = field(default_factory=Counter)
    refs: list[str] = field(default_factory=list)
    send_seconds: float = 0.0  # first request due -> last response
    max_lag_ms: float = 0.0  # how late the generator sent a request, at worst
    drained: bool = False
    statuses: Counter[str] = field(default_factory=Counter)
    unstamped: int = 0  # ended calls whose stored changes do not add up (times, order, version)
    bridged_up: int = 0  # calls still up when the load had ended: the bridged ones
    completion_seconds: float = 0.0  # first create_time -> last end_time, from the database
    tail_seconds: float = 0.0  # last CreateCall answered -> last call ended (the backlog at the end)
    window_seconds: float = 0.0  # the open loop and the drain: what the CPU figures cover
    server_cpu: float = 0.0
    other_cpu: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def created(self) -> int:
        return len(self.refs)

    @property
    def create_rate(self) -> float:
        return self.created / self.send_seconds if self.send_seconds else 0.0

    @property
    def completed_rate(self) -> float:
        ended = sum(n for status, n in self.statuses.items() if status not in ("QUEUED", "RINGING", "IN_PROGRESS"))
        return ended / self.completion_seconds if self.completion_seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


class CallsLoad:
    """One grpc.aio channel, the generated CallsStub, the workspace's keys and agents: each call is placed
    with a key and from an agent picked at random, so the directory's answers are rarely reused."""

    def __init__(self, server: ServerProcess, api_keys: list[str], to: str):
        self.server = server
        self.channel = grpc.aio.insecure_channel(server.address)
        self.stub = calls_pb2_grpc.CallsStub(self.channel)
        self.api_key = api_keys[0]
        self.metadata = (("authorization", f"Bearer {self.api_key}"),)
        self.key_metadata = [(("authorization", f"Bearer {key}"),) for key in api_keys]
        self.to = to
        self.agent_refs: list[str] = []

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.server.process.poll() is not None:
                raise ServerExited(f"the server exited with {self.server.process.returncode}:\n"
                                   f"{self.server.log_tail()}")
            try:
                await self.stub.ListActiveCalls(calls_pb2.ListActiveCallsRequest(), metadata=self.metadata, timeout=2)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise BenchError(f"ListActiveCalls: {error.code().name}: {error.details()}") from None
            if time.monotonic() > deadline:
                raise BenchError(f"the server did not answer within {timeout:.0f} s:\n{self.server.log_tail()}")
            await asyncio.sleep(0.2)

    async def create_agents(self, count: int) -> None:
        """Agents with one SIP domain each, as real ones: CreateCall asks Agents for one, Numbers for its number."""
        async with AsyncAgents(endpoint=self.server.address, api_key=self.api_key) as agents:
            for start in range(0, count, 100):
                made = await asyncio.gather(*(
                    agents.create_agent(name=f"Bench Agent {i}", username=f"bench{i}-{secrets.token_hex(3)}",
                                        secret=secrets.token_urlsafe(18), domains=["sip.bench.example"])
                    for i in range(start, min(count, start + 100))
                ))
                self.agent_refs += [agent.ref for agent in made]

    def request(self, to: str | None = None) -> calls_pb2.CreateCallRequest:
        return calls_pb2.CreateCallRequest(
            source=random.choice(self.agent_refs), destination=to or self.to, request_id=uuid.uuid4().hex
        )

    async def create(self, run: CreateRun | None, due: float, to: str | None = None) -> str:
        try:
            call = await self.stub.CreateCall(self.request(to), metadata=random.choice(self.key_metadata), timeout=10)
        except grpc.aio.AioRpcError as error:
            if run is None:
                raise BenchError(f"CreateCall: {error.code().name}: {error.details()}") from None
            run.errors[error.code().name] += 1
            return ""
        if run is not None:
            run.latencies_ms.append((time.perf_counter() - due) * 1000)
            run.refs.append(call.ref)
        return call.ref

    async def open_loop(self, run: CreateRun) -> None:
        """A request every 1/rate s from a fixed schedule, whatever the answers (none waits for another)."""
        tasks = []
        start = time.perf_counter() + 0.05
        for i in range(run.offered):
            due = start + i / run.rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            run.max_lag_ms = max(run.max_lag_ms, (time.perf_counter() - due) * 1000)
            tasks.append(asyncio.create_task(self.create(run, due)))
        await asyncio.gather(*tasks)
        run.send_seconds = time.perf_counter() - start

    async def active(self) -> int:
        """How many of the workspace's calls are running (every page of ListActiveCalls)."""
        count, token = 0, ""
        while True:
            page = await self.stub.ListActiveCalls(calls_pb2.ListActiveCallsRequest(page_size=1000, page_token=token),
                                                   metadata=self.metadata, timeout=30)
            count += len(page.calls)
            if not (token := page.next_page_token):
                return count

    async def drain(self, timeout: float, staying: int = 0) -> bool:
        """Polls ListActiveCalls until no more than the `staying` calls are left running; False at the timeout."""
        deadline = time.monotonic() + timeout
        while await self.active() > staying:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.25)
        return True

    async def bridge(self, count: int) -> list[str]:
        """`count` calls answered and left up (their callee never hangs up), in batches of 100."""
        refs: list[str] = []
        for start in range(0, count, 100):
            refs += await asyncio.gather(*(self.create(None, 0.0, STAYS_UP) for _ in range(start, min(count, start + 100))))
        return refs

    async def hang_up(self, refs: list[str]) -> None:
        for start in range(0, len(refs), 100):
            await asyncio.gather(*(
                self.stub.HangupCall(calls_pb2.HangupCallRequest(ref=ref), metadata=self.metadata, timeout=30)
                for ref in refs[start : start + 100]
            ))

    async def close(self) -> None:
        await self.channel.close()


def member_keys(url: str, workspace: str, count: int) -> list[str]:
    """`count` member keys of the workspace, made straight in the database (the CLI takes seconds a key)."""
    db = Database(url, threads=1)
    try:
        return db.transaction(lambda s: [
            workspaces.create_key(s, workspaces.find_workspace(s, workspace), Role.MEMBER) for _ in range(count)
        ], write=True)
    finally:
        db.close()


def read_back(url: str, run: CreateRun, last_response: datetime) -> None:
    """The run's calls as stored: final statuses, timestamps of every change, the completion window."""
    table = Call.__table__
    rows = []
    engine = one_shot_engine(url)
    try:
        with engine.connect() as conn:
            for start in range(0, len(run.refs), 500):
                rows += conn.execute(
                    select(table.c.status, table.c.create_time, table.c.answer_time, table.c.end_time, table.c.version)
                    .where(table.c.ref.in_(run.refs[start : start + 500]))
                ).all()
    finally:
        engine.dispose()
    if len(rows) != run.created:
        raise BenchError(f"{run.created} calls created, {len(rows)} found in the database")

    def utc(moment: datetime) -> datetime:
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    run.statuses = Counter(row.status for row in rows)

    def stored_in_full(row: Any) -> bool:
        """Every change the call went through stored: a COMPLETED call was created, rang, was answered and
        ended (version 4, as each change is a new version), in that order; other ends stamp end_time."""
        if row.status in ("QUEUED", "RINGING", "IN_PROGRESS"):
            return True
        if row.end_time is None or utc(row.end_time) < utc(row.create_time):
            return False
        if row.status != "COMPLETED":
            return True
        return row.answer_time is not None and utc(row.create_time) <= utc(row.answer_time) <= utc(row.end_time) \
            and row.version == 4

    run.unstamped = sum(1 for row in rows if not stored_in_full(row))
    ends = [utc(row.end_time) for row in rows if row.end_time is not None]
    if ends:
        run.completion_seconds = (max(ends) - min(utc(row.create_time) for row in rows)).total_seconds()
        run.tail_seconds = (max(ends) - last_response).total_seconds()


async def create_run(
    rate: float, args: argparse.Namespace, url: str, workdir: Path, base_env: dict[str, str]
) -> CreateRun:
    """A workspace, a fresh server process, an agent; warmup, the open loop, the drain, the read-back."""
    workspace = f"bench-calls-{secrets.token_hex(4)}"
    cli(base_env, "workspaces", "create", workspace)
    api_keys = member_keys(url, workspace, args.keys)
    env = {
        **base_env,
        "VOXPLANE_LOG_LEVEL": args.log_level,
        "VOXPLANE_SIM_RING_DELAY": str(args.ring_delay),
        "VOXPLANE_SIM_ANSWER_DELAY": str(args.answer_delay),
    }
    for attempt in range(3):
        server = ServerProcess(f"voxplane {rate:g}/s", [*voxplane_command(), "serve", "all"], env,
                               workdir / f"server-{rate:g}.log")
        load = CallsLoad(server, api_keys, args.to)
        try:
            try:
                await load.wait_ready()
            except ServerExited:
                if attempt == 2:
                    raise
                continue  # the free port we picked was taken before the server bound it: pick another
            await load.create_agents(args.agents)
            # Warmup: the Calls service's own channels to Agents and Numbers, the statement caches.
            for _ in range(3):
                await asyncio.gather(*(load.create(None, time.perf_counter()) for _ in range(20)))
            if not await load.drain(args.drain_timeout):
                raise BenchError("the warmup calls never ended")
            bridged = await load.bridge(args.bridged)
            print(f"create: {len(bridged):,} calls bridged and left up; {args.agents:,} agents, {args.keys} API keys",
                  file=sys.stderr, flush=True)
            print(f"create: {rate:g} calls/s for {args.duration:g} s (server pid {server.process.pid}) ...",
                  file=sys.stderr, flush=True)
            run = CreateRun(rate, max(1, round(rate * args.duration)))
            # The generator's own collector must not be what makes it late: its full passes walk every
            # module the bench imports (the server's, for its setup), ~60 ms each.
            gc.collect()
            gc.freeze()
            server0, busy0 = server.cpu_seconds(), busy_cpu_seconds()
            client0, window0 = time.process_time(), time.perf_counter()
            await load.open_loop(run)
            last_response = datetime.now(timezone.utc)
            run.drained = await load.drain(args.drain_timeout, staying=len(bridged))
            run.window_seconds = time.perf_counter() - window0
            run.server_cpu = server.cpu_seconds() - server0
            run.other_cpu = max(0.0, busy_cpu_seconds() - busy0 - run.server_cpu - (time.process_time() - client0))
            run.peak_rss_mb = server.peak_rss_mb()
            run.bridged_up = await load.active()
            await load.hang_up(bridged)
            if not run.created:
                raise BenchError(f"no CreateCall succeeded: {dict(run.errors)}")
            read_back(url, run, last_response)
            return run
        finally:
            await load.close()
            server.stop()
    raise AssertionError("unreachable")


def create_report(runs: list[CreateRun], args: argparse.Namespace) -> None:
    print(f"\n{'offered':>8} {'created':>8} {'create/s':>9} {'completed/s':>12} {'tail s':>7} {'p50 ms':>7}"
          f" {'p99 ms':>7} {'max ms':>7} {'late ms':>8} {'server CPU':>11} {'peak RSS':>9}  final statuses")
    print(f"{'calls/s':>8} {'':>8} {'':>9} {'':>12} {'':>7} {'':>7} {'':>7} {'':>7} {'':>8} {'us/call':>11}"
          f" {'MB':>9}")
    for r in runs:
        statuses = ", ".join(f"{status} {n}" for status, n in r.statuses.most_common())
        if r.errors:
            statuses += "; CreateCall errors: " + ", ".join(f"{code} {n}" for code, n in r.errors.most_common())
        if not r.drained:
            statuses += f"; still running after {args.drain_timeout:g} s"
        if r.unstamped:
            statuses += f"; {r.unstamped} ended calls with changes missing (times, order or version)"
        statuses += f"; {r.bridged_up:,} bridged calls up at the end"
        print(f"{r.rate:>8g} {r.created:>8,} {r.create_rate:>9.1f} {r.completed_rate:>12.1f} {max(0.0, r.tail_seconds):>7.2f}"
              f" {r.percentile(50):>7.2f} {r.percentile(99):>7.2f} {max(r.latencies_ms):>7.1f} {r.max_lag_ms:>8.1f}"
              f" {r.server_cpu / r.created * 1e6:>11,.0f} {r.peak_rss_mb:>9.1f}  {statuses}")
    busiest = max(r.other_cpu / r.window_seconds for r in runs)
    if busiest > 0.2:
        print(f"warning: other processes used up to {busiest:.2f} of {os.cpu_count()} CPUs during the runs "
              "(the server's own children included); the figures may be skewed: rerun on a quiet machine")

    def clean(r: CreateRun) -> bool:
        """Every offered call created, driven to a final status with its changes stored."""
        return not r.errors and r.drained and not r.unstamped and r.created == r.offered

    print("\ncreate against the targets:")
    # Calls/s completed: the best run that created every call, drove every one to the end and kept p99.
    good = [r for r in runs if clean(r) and r.percentile(99) < MAX_CREATE_P99_MS]
    best = max(good, key=lambda r: r.completed_rate, default=None)
    # At an offered rate of exactly 200/s, first create -> last end is (n - 1)/200 s plus one call's life,
    # a hair under 200/s; the run at the target rate passes when it kept up (no backlog, ≥ 98% of offered).
    at_target = [r for r in runs if r.rate >= MIN_COMPLETED_PER_SECOND]
    if best is None:
        print(f"  FAIL  completed calls/s with p99 < {MAX_CREATE_P99_MS:.0f} ms: no run created and completed "
              "every call within the latency target")
    else:
        kept_up = best.completed_rate >= 0.98 * MIN_COMPLETED_PER_SECOND and best.rate >= MIN_COMPLETED_PER_SECOND
        print(f"  {'PASS' if kept_up else 'FAIL'}  completed calls/s   {best.completed_rate:7.1f}  at {best.rate:g}/s offered"
              f"  (target >= {MIN_COMPLETED_PER_SECOND:.0f}, every call created, ended and stored)")
    for r in at_target:
        p99 = r.percentile(99)
        ok = clean(r) and p99 < MAX_CREATE_P99_MS
        # The target is at 200/s; a faster run shows the headroom: PASS if it keeps p99 too, else INFO.
        beyond = r.rate > MIN_COMPLETED_PER_SECOND
        print(f"  {'PASS' if ok else 'INFO' if beyond else 'FAIL'}  CreateCall p99 at {r.rate:g}/s  {p99:7.2f} ms"
              f"  (target < {MAX_CREATE_P99_MS:.0f} ms{' at 200/s; this rate is above it' if beyond else ''})")
    for r in runs:
        print(f"  {'PASS' if r.peak_rss_mb < 150 else 'INFO'}  server peak RSS at {r.rate:g}/s  {r.peak_rss_mb:7.1f} MB"
              "  (for reference; ingress.py's target is < 150 MB)")


def create(args: argparse.Namespace) -> None:
    """The create-rate part."""
    workdir = Path(tempfile.mkdtemp(prefix="voxplane-bench-calls-"))
    url = args.database_url or f"sqlite:///{workdir / 'voxplane.db'}"
    base_env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_LOG_LEVEL": "WARNING",
                "VOXPLANE_SHUTDOWN_GRACE": "1"}
    try:
        cli(base_env, "migrate")
        print(f"CreateCall to {args.to} through the simulated gateway (ring {args.ring_delay:g} s, answer "
              f"{args.answer_delay:g} s), {args.duration:g} s a rate, open loop, {url.split(':')[0]}, "
              f"server logs at {args.log_level}; Python {platform.python_version()}, grpcio {grpc.__version__}, "
              f"{os.cpu_count()} CPUs", flush=True)
        runs = [asyncio.run(create_run(rate, args, url, workdir, base_env)) for rate in args.rates]
        create_report(runs, args)
    finally:
        if args.keep:
            print(f"kept {workdir} (server logs, SQLite database)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("create", "pages", "all"), default="all")
    parser.add_argument("--database-url", help="an empty database to migrate and use (default: a SQLite file)")
    group = parser.add_argument_group("create")
    group.add_argument("--rates", default="200,300", help="offered CreateCall rates, calls/s (default 200,300)")
    group.add_argument("--duration", type=float, default=10.0, help="seconds of load per rate (default 10)")
    group.add_argument("--to", default="+15005550060", help="callee (default: answers, far end hangs up at once)")
    group.add_argument("--ring-delay", type=float, default=0.01, help="VOXPLANE_SIM_RING_DELAY (default 0.01)")
    group.add_argument("--answer-delay", type=float, default=0.01, help="VOXPLANE_SIM_ANSWER_DELAY (default 0.01)")
    group.add_argument("--log-level", default="INFO", help="the server's VOXPLANE_LOG_LEVEL (default INFO)")
    group.add_argument("--agents", type=int, default=1000, help="agents the calls are placed from (default 1000)")
    group.add_argument("--keys", type=int, default=100, help="API keys the calls are placed with (default 100)")
    group.add_argument("--bridged", type=int, default=2000,
                       help="calls answered and left up while the load runs (default 2000)")
    group.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for calls to end")
    group.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs, database)")
    group = parser.add_argument_group("pages")
    group.add_argument("--calls", type=int, default=1_000_000)
    group.add_argument("--page-size", type=int, default=20)
    group.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        args.rates = [float(rate) for rate in args.rates.split(",")]
    except ValueError:
        parser.error("--rates takes calls/s separated by commas, e.g. 200,300")
    if any(rate <= 0 for rate in args.rates) or args.duration <= 0:
        parser.error("--rates and --duration must be positive")
    try:
        if args.part in ("create", "all"):
            create(args)
        if args.part in ("pages", "all"):
            pages(args)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
