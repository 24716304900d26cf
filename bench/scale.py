"""Issue 14's targets on PostgreSQL: the hot path against the echo server, Calls at 200/s, server CPU per
request with 1 and 2 workers, and two replicas racing on the same numbers.

Each measurement runs `--repeats` times (default 3); the figures are printed with their spread (min–max)
and each target is judged on the median, PASS/FAIL. It measures, it does not judge: the exit status is 0
whatever the figures, nonzero only when something breaks.

  ingress  GetIngressInfo on `voxplane serve numbers` (one process) against bench/ingress.py's echo
           server, same client: throughput ratio at 32 in flight (>= 0.6), p50 at 1 in flight (< 1 ms).
  cost     `serve numbers --workers 1` and `--workers 2`: server CPU (every process of the server) over
           requests served, GetIngressInfo at 32 in flight (<= 250 us) and CreateNumber at 16 in flight
           (<= 1 ms), over 4 connections so the kernel spreads them over the workers; and the
           requests/s that cost implies for a 16-core host (16 cores / CPU per request).
  calls    bench/calls.py's hardened create workload (1,000 agents, 100 keys, 2,000 calls bridged) at
           200 calls/s: CreateCall p99 (< 50 ms).
  race     two replicas (`serve numbers`, twice) and ten clients, each its own workspace, alternating
           replicas, acquiring, releasing and creating the same few numbers for `--race-seconds`; then
           the invariants against the final state: zero violations.

    .venv/bin/python bench/scale.py --database-url postgresql://user@host/db [--parts ingress,cost,calls,race]
        [--repeats 3] [--numbers 20000] [--duration 5] [--log-level WARNING] [--race-seconds 10] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import calls as calls_bench  # bench/calls.py
import grpc
import ingress  # bench/ingress.py
from ingress import BenchError, Client, ServerExited, ServerProcess, busy_cpu_seconds, cli, voxplane_command
from sqlalchemy import select
from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.numbers.v1 import numbers_pb2_grpc
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Role
from voxplane.services.numbers.models import Number
from voxplane.services.persistence.db import Database, one_shot_engine

PARTS = ("ingress", "cost", "calls", "race")
# Targets, from issue 14.
MIN_RATIO = 0.6  # GetIngressInfo requests/s over the echo server's, at 32 in flight
MAX_P50_MS = 1.0  # GetIngressInfo p50 at 1 in flight
MAX_INGRESS_CPU_US = 250.0  # server CPU per GetIngressInfo
MAX_CREATE_CPU_US = 1000.0  # server CPU per CreateNumber
MAX_CALLS_P99_MS = 50.0  # CreateCall p99 at 200 calls/s
HOST_CORES = 16  # the host the CPU per request is turned into throughput for
CONNECTIONS = 4  # client connections in the cost part: SO_REUSEPORT spreads connections, not requests
# A channel of its own per connection: grpc shares one connection between channels to one address otherwise.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
RACE_CLIENTS = 10
RACE_NUMBERS = 6
RACE_IN_FLIGHT = 2  # per client


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def spread(values: Sequence[float], unit: str, digits: int = 2) -> str:
    """`median (min–max)` of the repeats."""
    if len(values) == 1:
        return f"{values[0]:,.{digits}f} {unit}"
    return f"{statistics.median(values):,.{digits}f} {unit} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Setup:
    url: str
    workdir: Path
    env: dict[str, str]  # for the CLI and the servers
    workspace: str
    service_key: str
    member_key: str
    numbers: list[str]


# --- ingress: GetIngressInfo against the echo server ------------------------------------------------------


async def ingress_part(setup: Setup, args: argparse.Namespace) -> None:
    requests = [pb.GetIngressInfoRequest(e164_number=e164) for e164 in random.Random(7).choices(setup.numbers, k=50_000)]
    echo_command = [sys.executable, str(Path(ingress.__file__).resolve()), "--serve-echo"]
    serve = [*voxplane_command(), "serve", "numbers"]
    env = {**setup.env, "VOXPLANE_LOG_LEVEL": args.log_level}
    ratios, p50s = [], []
    print(f"\n== ingress: GetIngressInfo, `serve numbers` at {args.log_level} against the echo server, "
          f"{args.duration:g} s a run, {args.repeats} repeats", flush=True)
    print(f"{'repeat':>6} {'echo/s @32':>11} {'voxplane/s @32':>15} {'ratio':>6} {'p50 ms @1':>10} {'echo p50 @1':>12}"
          f" {'server us/req @32':>18} {'load avg':>16}")
    for repeat in range(args.repeats):
        echo_runs, _ = await ingress.bench_target("echo", echo_command, setup.env, setup.workdir / "echo.log",
                                                  setup.service_key, requests, args.duration)
        runs, _ = await ingress.bench_target("voxplane", serve, env, setup.workdir / "numbers.log",
                                             setup.service_key, requests, args.duration)
        echo_by = {r.in_flight: r for r in echo_runs}
        by = {r.in_flight: r for r in runs}
        ratio = by[32].rate / echo_by[32].rate
        ratios.append(ratio)
        p50s.append(by[1].p50)
        print(f"{repeat + 1:>6} {echo_by[32].rate:>11,.0f} {by[32].rate:>15,.0f} {ratio:>6.2f} {by[1].p50:>10.3f}"
              f" {echo_by[1].p50:>12.3f} {by[32].cpu_us_per_request(by[32].server_cpu):>18,.0f} {load_average():>16}",
              flush=True)
    RESULTS.append((f"GetIngressInfo / echo at 32 in flight (target >= {MIN_RATIO})", spread(ratios, "x"),
                    statistics.median(ratios) >= MIN_RATIO))
    RESULTS.append((f"GetIngressInfo p50 at 1 in flight (target < {MAX_P50_MS:g} ms)", spread(p50s, "ms", 3),
                    statistics.median(p50s) < MAX_P50_MS))


# --- cost: server CPU per request, 1 and 2 workers ------------------------------------------------------------


class CreateLoad:
    """CreateNumber of fresh numbers over `CONNECTIONS` connections, every call expected to succeed."""

    def __init__(self, server: ServerProcess, api_key: str, numbers: Callable[[], str]):
        self.channels = [grpc.aio.insecure_channel(server.address, options=OWN_CONNECTION) for _ in range(CONNECTIONS)]
        self.stubs = [numbers_pb2_grpc.NumbersStub(channel) for channel in self.channels]
        self.metadata = (("authorization", f"Bearer {api_key}"),)
        self.numbers = numbers

    async def drive(self, in_flight: int, seconds: float) -> int:
        done = 0
        end = time.perf_counter() + seconds

        async def worker(stub: numbers_pb2_grpc.NumbersStub) -> None:
            nonlocal done
            while time.perf_counter() < end:
                e164 = self.numbers()
                try:
                    await stub.CreateNumber(pb.CreateNumberRequest(provider_ref="bench-trunk", e164_number=e164,
                                                                   aor_link=ingress.aor_of(e164)),
                                            metadata=self.metadata, timeout=10)
                except grpc.aio.AioRpcError as error:
                    raise BenchError(f"CreateNumber({e164}): {error.code().name}: {error.details()}") from None
                done += 1

        await asyncio.gather(*(worker(self.stubs[i % len(self.stubs)]) for i in range(in_flight)))
        return done

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def measured(server: ServerProcess, drive: Callable[[], object]) -> tuple[int, float, float, float]:
    """(requests, wall seconds, server CPU seconds, other processes' CPU seconds) of one `drive()`."""
    server0, client0, busy0, wall0 = server.cpu_seconds(), time.process_time(), busy_cpu_seconds(), time.perf_counter()
    count = await drive()  # type: ignore[misc]
    wall = time.perf_counter() - wall0
    server_cpu = server.cpu_seconds() - server0
    other = max(0.0, busy_cpu_seconds() - busy0 - server_cpu - (time.process_time() - client0))
    return count, wall, server_cpu, other


async def cost_figures(server: ServerProcess, clients: list[Client], creates: CreateLoad, seconds: float) -> dict[str, float]:
    # Warm every worker: each connection reached one of them.
    await asyncio.gather(*(client.drive(8, 1.0) for client in clients))
    await creates.drive(8, 1.0)

    async def lookups() -> int:
        done = await asyncio.gather(*(client.drive(32 // CONNECTIONS, seconds) for client in clients))
        return sum(count for count, _, _ in done)

    count, wall, cpu, other = await measured(server, lookups)
    figures = {"ingress_us": cpu / count * 1e6, "ingress_rate": count / wall, "ingress_other": other / wall}
    count, wall, cpu, other = await measured(server, lambda: creates.drive(16, seconds))
    figures.update(create_us=cpu / count * 1e6, create_rate=count / wall, create_other=other / wall)
    return figures


async def cost_run(setup: Setup, args: argparse.Namespace, workers: int, fresh: Callable[[], str]) -> dict[str, float]:
    """One server of `workers` workers: CPU per GetIngressInfo and per CreateNumber, in µs."""
    env = {**setup.env, "VOXPLANE_LOG_LEVEL": args.log_level}
    requests = [pb.GetIngressInfoRequest(e164_number=e164) for e164 in random.Random(11).choices(setup.numbers, k=20_000)]
    for attempt in range(3):
        server = ServerProcess(f"numbers x{workers}", [*voxplane_command(), "serve", "numbers", "--workers", str(workers)],
                               env, setup.workdir / f"numbers-{workers}.log")
        clients = [Client(server, setup.service_key, requests, OWN_CONNECTION) for _ in range(CONNECTIONS)]
        creates = CreateLoad(server, setup.member_key, fresh)
        try:
            try:
                for client in clients:
                    await client.wait_ready()
            except ServerExited:
                if attempt == 2:
                    raise
                continue
            return await cost_figures(server, clients, creates, args.duration)
        finally:
            for client in clients:
                await client.close()
            await creates.close()
            server.stop()
    raise AssertionError("unreachable")


async def cost_part(setup: Setup, args: argparse.Namespace) -> None:
    taken = set(setup.numbers)
    generator = ingress.valid_numbers(random.Random(secrets.randbits(32)), taken)
    with one_shot_engine(setup.url).connect() as conn:  # E.164 is unique across the deployment
        taken.update(conn.scalars(select(Number.__table__.c.e164_number)))

    def fresh() -> str:
        return next(generator)

    print(f"\n== cost: server CPU per request (all its processes), `serve numbers --workers N` at {args.log_level}, "
          f"{args.duration:g} s a measurement, {CONNECTIONS} connections, {args.repeats} repeats", flush=True)
    print(f"{'workers':>7} {'repeat':>6} {'GetIngressInfo':>15} {'req/s':>7} {'CreateNumber':>13} {'req/s':>6}"
          f" {'other cores':>12} {'load avg':>16}")
    print(f"{'':>7} {'':>6} {'us/request':>15} {'':>7} {'us/request':>13}")
    by_workers: dict[int, list[dict[str, float]]] = {}
    for workers in (1, 2):
        for repeat in range(args.repeats):
            figures = await cost_run(setup, args, workers, fresh)
            by_workers.setdefault(workers, []).append(figures)
            print(f"{workers:>7} {repeat + 1:>6} {figures['ingress_us']:>15,.0f} {figures['ingress_rate']:>7,.0f}"
                  f" {figures['create_us']:>13,.0f} {figures['create_rate']:>6,.0f}"
                  f" {max(figures['ingress_other'], figures['create_other']):>12.2f} {load_average():>16}", flush=True)
    print(f"\n{'':<34} {'1 worker':>30} {'2 workers':>30}")
    for key, label in (("ingress_us", "GetIngressInfo us/request"), ("create_us", "CreateNumber us/request")):
        cells = [spread([f[key] for f in by_workers[w]], "", 0) for w in (1, 2)]
        print(f"{label:<34} {cells[0]:>30} {cells[1]:>30}")
        implied = [spread([HOST_CORES * 1e6 / f[key] for f in by_workers[w]], "", 0) for w in (1, 2)]
        print(f"{'  implied req/s on ' + str(HOST_CORES) + ' cores':<34} {implied[0]:>30} {implied[1]:>30}")
    for key, label, limit in (("ingress_us", "GetIngressInfo", MAX_INGRESS_CPU_US),
                              ("create_us", "CreateNumber", MAX_CREATE_CPU_US)):
        for workers in (1, 2):
            values = [f[key] for f in by_workers[workers]]
            RESULTS.append((f"{label} server CPU, {workers} worker{'s' * (workers > 1)} (target <= {limit:,.0f} us)",
                            spread(values, "us", 0), statistics.median(values) <= limit))


# --- calls: CreateCall at 200/s, the hardened workload ------------------------------------------------------


async def calls_part(setup: Setup, args: argparse.Namespace) -> None:
    options = argparse.Namespace(keys=100, agents=1000, bridged=2000, log_level=args.log_level, ring_delay=0.01,
                                 answer_delay=0.01, to="+15005550060", drain_timeout=120.0, duration=10.0)
    print(f"\n== calls: bench/calls.py's create workload at 200/s ({options.agents} agents, {options.keys} keys, "
          f"{options.bridged} bridged), `serve all` at {args.log_level}, {args.repeats} repeats", flush=True)
    p99s = []
    for repeat in range(args.repeats):
        run = await calls_bench.create_run(200.0, options, setup.url, setup.workdir, setup.env)
        p99s.append(run.percentile(99))
        errors = ", ".join(f"{code} {n}" for code, n in run.errors.items()) or "none"
        print(f"  repeat {repeat + 1}: created {run.created:,} of {run.offered:,}, p50 {run.percentile(50):.1f} ms,"
              f" p99 {run.percentile(99):.1f} ms, server CPU {run.server_cpu / max(1, run.created) * 1e6:,.0f} us/call,"
              f" errors {errors}, load avg {load_average()}", flush=True)
    RESULTS.append((f"CreateCall p99 at 200/s (target < {MAX_CALLS_P99_MS:g} ms)", spread(p99s, "ms", 1),
                    statistics.median(p99s) < MAX_CALLS_P99_MS))


# --- race: two replicas, ten clients, the same numbers ---------------------------------------------------------


@dataclass
class Success:
    client: int
    op: str  # acquire, create, release
    e164: str
    ref: str
    started: float
    ended: float


@dataclass
class RaceLog:
    successes: list[Success] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)


class Racer:
    """One client of its own workspace on one replica: takes (acquires or creates) and releases the race's
    numbers, at random, keeping the refs it holds."""

    def __init__(self, index: int, address: str, api_key: str, numbers: list[str], log: RaceLog):
        self.index = index
        self.channel = grpc.aio.insecure_channel(address, options=OWN_CONNECTION)
        self.stub = numbers_pb2_grpc.NumbersStub(self.channel)
        self.metadata = (("authorization", f"Bearer {api_key}"),)
        self.numbers = numbers
        self.held: dict[str, str] = {}  # e164 -> ref
        self.log = log
        self.rng = random.Random(index)

    async def step(self) -> None:
        e164 = self.rng.choice(self.numbers)
        ref = self.held.pop(e164, None)
        started = time.perf_counter()
        try:
            if ref is not None:
                op = "release"
                number = await self.stub.ReleaseNumber(pb.ReleaseNumberRequest(ref=ref), metadata=self.metadata,
                                                       timeout=10)
            elif self.rng.random() < 0.5:
                op = "acquire"
                number = await self.stub.AcquireNumber(pb.AcquireNumberRequest(e164_number=e164),
                                                       metadata=self.metadata, timeout=10)
            else:
                op = "create"
                number = await self.stub.CreateNumber(pb.CreateNumberRequest(provider_ref="race", e164_number=e164),
                                                      metadata=self.metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            if ref is not None:
                self.held[e164] = ref  # not released: still ours
            self.log.refusals[error.code().name] += 1
            return
        if op != "release":
            self.held[e164] = number.ref
        self.log.successes.append(Success(self.index, op, e164, number.ref, started, time.perf_counter()))

    async def run(self, seconds: float) -> None:
        end = time.perf_counter() + seconds

        async def lane() -> None:
            while time.perf_counter() < end:
                await self.step()

        await asyncio.gather(*(lane() for _ in range(RACE_IN_FLIGHT)))

    async def close(self) -> None:
        await self.channel.close()


def violations(log: RaceLog, racers: list[Racer], owners_of: dict[int, int], url: str, numbers: list[str]) -> list[str]:
    """What breaks the invariants, checked against the final state."""
    found: list[str] = []
    table = Number.__table__
    engine = one_shot_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(table.c.e164_number, table.c.ref, table.c.workspace_id, table.c.state)
                                .where(table.c.e164_number.in_(numbers))).all()
    finally:
        engine.dispose()
    live = [row for row in rows if row.state != "RELEASED"]
    owners: dict[str, set[int]] = {}
    for row in live:
        owners.setdefault(row.e164_number, set()).add(row.workspace_id)
    found += [f"{e164} owned by {len(ws)} workspaces" for e164, ws in owners.items() if len(ws) > 1]
    found += [f"{e164} stored {n} times" for e164, n in Counter(row.e164_number for row in live).items() if n > 1]
    # Each take gave a ref of its own; a ref still held by its client at the end is the number's live row, in its
    # workspace; every live row is one a client still holds.
    takes = Counter(s.ref for s in log.successes if s.op != "release")
    found += [f"ref {ref} returned by {n} takes" for ref, n in takes.items() if n > 1]
    by_ref = {row.ref: row for row in live}
    held = {(racer.index, e164, ref) for racer in racers for e164, ref in racer.held.items()}
    for index, e164, ref in held:
        row = by_ref.get(ref)
        if row is None or row.e164_number != e164 or row.workspace_id != owners_of[index]:
            found.append(f"client {index} took {e164} ({ref}) and never released it, but it is not theirs at the end")
    held_refs = {ref for _, _, ref in held}
    found += [f"{row.e164_number} ({row.ref}) is live but no client's take holds it" for row in live
              if row.ref not in held_refs]
    # Never two holders at once: from a take's answer to its release's request, the number was that client's.
    windows: dict[str, list[tuple[float, float, str]]] = {}
    releases = {s.ref: s.started for s in log.successes if s.op == "release"}
    for s in log.successes:
        if s.op != "release":
            windows.setdefault(s.e164, []).append((s.ended, releases.get(s.ref, float("inf")), s.ref))
    for e164, spans in windows.items():
        spans.sort()
        for (_, end, ref), (start, _, other) in itertools.pairwise(spans):
            if start < end:
                found.append(f"{e164} held by {ref} and {other} at once")
    return found


def keyed_workspaces(url: str, wanted: list[tuple[str, Role]]) -> list[tuple[int, str]]:
    """(id, API key) of a new workspace per (name, role), made straight in the database (the CLI takes seconds each)."""
    db = Database(url, threads=1)

    def make(session: Session) -> list[tuple[int, str]]:
        made = []
        for name, role in wanted:
            workspace = workspaces.create_workspace(session, name)
            made.append((workspace, workspaces.create_key(session, workspace, role)))
        session.flush()
        return [(workspace.id, key) for workspace, key in made]

    try:
        return db.transaction(make, write=True)
    finally:
        db.close()


async def race_run(setup: Setup, args: argparse.Namespace, repeat: int) -> tuple[RaceLog, list[str]]:
    env = {**setup.env, "VOXPLANE_LOG_LEVEL": "WARNING", "VOXPLANE_RELEASE_AGING_DAYS": "0"}  # released: free again
    stock = list(itertools.islice(ingress.valid_numbers(random.Random(secrets.randbits(32)), set(setup.numbers)),
                                  RACE_NUMBERS))
    names = [f"race-{secrets.token_hex(3)}-{i}" for i in range(RACE_CLIENTS)]
    operator = f"race-op-{secrets.token_hex(3)}"
    made = keyed_workspaces(setup.url, [(name, Role.MEMBER) for name in names] + [(operator, Role.OPERATOR)])
    keys = [key for _, key in made[:-1]]
    operator_key = made[-1][1]
    owned = {i: workspace_id for i, (workspace_id, _) in enumerate(made[:-1])}
    replicas = [ServerProcess(f"replica {i}", [*voxplane_command(), "serve", "numbers"], env,
                              setup.workdir / f"replica-{i}.log") for i in range(2)]
    log = RaceLog()
    racers: list[Racer] = []
    try:
        for replica in replicas:
            await Client(replica, setup.service_key, [pb.GetIngressInfoRequest(e164_number=setup.numbers[0])]).wait_ready()
        async with grpc.aio.insecure_channel(replicas[0].address) as channel:
            await numbers_pb2_grpc.NumbersStub(channel).ImportInventory(
                pb.ImportInventoryRequest(entries=[pb.InventoryEntry(e164_number=e164, provider_ref="race") for e164 in stock]),
                metadata=(("authorization", f"Bearer {operator_key}"),), timeout=30)
        racers = [Racer(i, replicas[i % 2].address, keys[i], stock, log) for i in range(RACE_CLIENTS)]
        await asyncio.gather(*(racer.run(args.race_seconds) for racer in racers))
        found = violations(log, racers, owned, setup.url, stock)
    finally:
        for racer in racers:
            await racer.close()
        for replica in replicas:
            replica.stop()
        if not args.keep:
            for name in [*names, operator]:
                ingress.unload(setup.url, name)
    ops = Counter(s.op for s in log.successes)
    internal = log.refusals["INTERNAL"] + log.refusals["UNKNOWN"]
    if internal:
        found.append(f"{internal} answers INTERNAL/UNKNOWN")
    print(f"  repeat {repeat + 1}: {sum(ops.values()):,} successes ({', '.join(f'{op} {n}' for op, n in ops.items())}),"
          f" refusals {dict(log.refusals)}, violations {len(found)}, load avg {load_average()}", flush=True)
    for line in found[:10]:
        print(f"    {line}")
    return log, found


async def race_part(setup: Setup, args: argparse.Namespace) -> None:
    print(f"\n== race: 2 replicas (`serve numbers`), {RACE_CLIENTS} clients (own workspaces, alternating replicas,"
          f" {RACE_IN_FLIGHT} in flight each) on {RACE_NUMBERS} numbers, {args.race_seconds:g} s, {args.repeats} repeats",
          flush=True)
    counts = []
    for repeat in range(args.repeats):
        _, found = await race_run(setup, args, repeat)
        counts.append(len(found))
    RESULTS.append(("two replicas racing: invariant violations (target 0)", ", ".join(map(str, counts)),
                    not any(counts)))


# --- main --------------------------------------------------------------------------------------------------------

RESULTS: list[tuple[str, str, bool]] = []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL database of the bench's own")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which parts, of {','.join(PARTS)} (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--numbers", type=int, default=20_000, help="numbers loaded for GetIngressInfo (default 20000)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds a measurement (default 5)")
    parser.add_argument("--log-level", default="WARNING", help="the servers' VOXPLANE_LOG_LEVEL (default WARNING)")
    parser.add_argument("--race-seconds", type=float, default=10.0, help="seconds of racing (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and the loaded rows")
    args = parser.parse_args(argv)
    args.parts = [part for part in args.parts.split(",") if part]
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if not args.database_url.startswith("postgres"):
        parser.error("--database-url must be PostgreSQL: these are PostgreSQL's targets")
    return args


async def bench(setup: Setup, args: argparse.Namespace) -> None:
    parts = {"ingress": ingress_part, "cost": cost_part, "calls": calls_part, "race": race_part}
    for part in args.parts:
        await parts[part](setup, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="voxplane-bench-scale-"))
    url = args.database_url
    env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_LOG_LEVEL": "WARNING", "VOXPLANE_SHUTDOWN_GRACE": "1"}
    workspace = f"bench-scale-{secrets.token_hex(4)}"
    created = False
    try:
        cli(env, "migrate")
        cli(env, "workspaces", "create", workspace)
        created = True
        service_key = cli(env, "keys", "create", "--workspace", workspace, "--role", "service")
        member_key = cli(env, "keys", "create", "--workspace", workspace, "--role", "member")
        numbers = ingress.insert_numbers(url, workspace, args.numbers) if {"ingress", "cost", "race"} & set(args.parts) else []
        print(f"scale: PostgreSQL, {args.numbers:,} numbers; Python {platform.python_version()}, grpcio {grpc.__version__},"
              f" {os.cpu_count()} CPUs; load average {load_average()} at the start", flush=True)
        asyncio.run(bench(Setup(url, workdir, env, workspace, service_key, member_key, numbers), args))
        print("\nissue 14's targets (median of the repeats, min–max in brackets):")
        for label, figure, ok in RESULTS:
            print(f"  {verdict(ok)}  {label:<62} {figure}")
        print(f"load average at the end {load_average()}")
        return 0
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        ingress.clean_up(args, workdir, url, workspace if created else None, "server logs")


if __name__ == "__main__":
    sys.exit(main())
