"""GetIngressInfo, the SIP edge's hot path: throughput, latency and memory against a bare echo server.

Loads --numbers numbers into a migrated database, then drives three servers,
each its own process, with the same grpc.aio client and the same stub:

  echo                  a grpc.aio server answering GetIngressInfo with a canned
                        response of the same shape (the stack's ceiling);
  voxplane              `voxplane serve all` at VOXPLANE_LOG_LEVEL=WARNING;
  voxplane, INFO logs   the same at INFO, the production default (one JSON line per RPC).

Prints requests/s, p50 and p99 at 1 and 32 in-flight requests, each target
with PASS/FAIL, and the servers' peak RSS. It measures, it does not judge:
the exit status is 0 whatever the figures, nonzero only when something breaks.

    .venv/bin/python bench/ingress.py [--numbers 100000] [--duration 5]
                                      [--database-url postgresql://...] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import phonenumbers
from sqlalchemy import delete, insert, select

from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.numbers.v1 import numbers_pb2_grpc
from voxplane.services.numbers.models import Number
from voxplane.services.persistence.base import new_ref, utcnow
from voxplane.services.persistence.db import one_shot_engine
from voxplane.services.persistence.tenancy import ApiKey, Workspace

IN_FLIGHT = (1, 32)
WARMUP_SECONDS = 1.0
# Targets, from the issue that asked for this bench.
MIN_THROUGHPUT_RATIO = 0.6  # voxplane / echo requests/s at 32 in-flight
MAX_P99_FACTOR = 2.0  # voxplane p99 / echo p99
MAX_P50_MS_ONE_IN_FLIGHT = 1.0
MAX_PEAK_RSS_MB = 150.0

SERVICE = pb.DESCRIPTOR.services_by_name["Numbers"].full_name
AREA_CODES = ("212", "213", "206", "303", "305", "312", "404", "415", "503", "512", "602", "617", "646", "702", "718")


class BenchError(Exception):
    """Something broke: the figures would mean nothing."""


class ServerExited(BenchError):
    """The server process ended before it answered (e.g. its port was taken meanwhile)."""


# --- the database --------------------------------------------------------------------------


def aor_of(e164: str) -> str:
    return f"sip:{e164[1:]}@pbx.bench.example"


def valid_numbers(rng: random.Random, taken: set[str]) -> Iterator[str]:
    """Distinct US numbers that libphonenumber calls valid, in E.164, none of them in `taken`."""
    seen = set(taken)
    while True:
        national = int(f"{rng.choice(AREA_CODES)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}")
        e164 = f"+1{national}"
        # Built, not parsed from text: parsing 100,000 strings would double the load time.
        if e164 not in seen and phonenumbers.is_valid_number_for_region(
            phonenumbers.PhoneNumber(country_code=1, national_number=national), "US"
        ):
            seen.add(e164)
            yield e164


def voxplane_command() -> list[str]:
    """The `voxplane` console script of this interpreter's environment."""
    script = shutil.which("voxplane", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-c", "from voxplane.services.cli import main; main()"]


def cli(env: dict[str, str], *args: str) -> str:
    """Runs `voxplane ARGS` and returns its stdout."""
    done = subprocess.run([*voxplane_command(), *args], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        last = "\n".join(done.stderr.strip().splitlines()[-2:])  # the error, not the whole traceback
        raise BenchError(f"`voxplane {' '.join(args)}` failed:\n{last}")
    return done.stdout.strip()


def insert_numbers(url: str, workspace_name: str, count: int) -> list[str]:
    """Bulk-inserts `count` numbers routed to AORs into the workspace (Core, not 100,000 RPCs)."""
    table = Number.__table__
    engine = one_shot_engine(url)
    try:
        with engine.begin() as conn:
            workspace_id = conn.scalar(select(Workspace.id).where(Workspace.name == workspace_name))
            # A shared database may hold numbers already; E.164 is unique across the deployment.
            taken = set(conn.scalars(select(table.c.e164_number)))
            fresh = valid_numbers(random.Random(20261125), taken)
            numbers = [next(fresh) for _ in range(count)]
            now = utcnow()
            rows = [
                {
                    "e164_number": e164,
                    "name": "",
                    "provider_ref": "bench-trunk",
                    "aor_link": aor_of(e164),
                    "ref": new_ref(),
                    "workspace_id": workspace_id,
                    "create_time": now,
                    "update_time": now,
                    "version": 1,
                }
                for e164 in numbers
            ]
            for start in range(0, len(rows), 10_000):
                conn.execute(insert(table), rows[start : start + 10_000])
    finally:
        engine.dispose()
    return numbers


def unload(url: str, workspace_name: str) -> None:
    """Removes the bench's workspace, key and numbers from a database the bench does not own."""
    engine = one_shot_engine(url)
    try:
        with engine.begin() as conn:
            workspace_id = conn.scalar(select(Workspace.id).where(Workspace.name == workspace_name))
            if workspace_id is not None:
                conn.execute(delete(Number.__table__).where(Number.__table__.c.workspace_id == workspace_id))
                conn.execute(delete(ApiKey.__table__).where(ApiKey.__table__.c.workspace_id == workspace_id))
                conn.execute(delete(Workspace.__table__).where(Workspace.__table__.c.id == workspace_id))
    finally:
        engine.dispose()


# --- the echo server (run by this same file, in its own process) ----------------------------


async def serve_echo(port: int) -> None:
    """GetIngressInfo on the same stack with no work behind it: no auth, no database, no logs."""

    async def echo(request: pb.GetIngressInfoRequest, _context: grpc.aio.ServicerContext) -> pb.GetIngressInfoResponse:
        return pb.GetIngressInfoResponse(
            number_ref="0123456789abcdef",
            e164_number=request.e164_number,
            workspace_ref="fedcba9876543210",
            aor_link=aor_of(request.e164_number),
        )

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "GetIngressInfo": grpc.unary_unary_rpc_method_handler(
                echo,
                request_deserializer=pb.GetIngressInfoRequest.FromString,
                response_serializer=pb.GetIngressInfoResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # as services/core/server.py
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


# --- server processes ---------------------------------------------------------------------------


def clean_up(args: argparse.Namespace, workdir: Path, url: str, workspace_name: str | None, kept: str) -> None:
    """Removes what a run made: its folder and, on a database of the caller's, its workspace (unless --keep)."""
    if args.keep:
        print(f"kept {workdir} ({kept})", file=sys.stderr)
        return
    if args.database_url and workspace_name:
        try:
            unload(url, workspace_name)
        except Exception as error:  # noqa: BLE001 - report, but keep the first error
            print(f"bench: could not remove workspace {workspace_name}: {error}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time so far of a process and of its children, theirs included (`serve --workers N`: every worker)."""
    try:
        children = (Path(f"/proc/{pid}/task") / str(pid) / "children").read_text().split()
        return cpu_seconds(pid) + sum(tree_cpu_seconds(int(child)) for child in children)
    except FileNotFoundError:  # a child that just ended
        return 0.0


def busy_cpu_seconds() -> float:
    """CPU time every process of the machine has used so far (from /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of the process's /proc status (VmRSS: now; VmHWM: its high-water mark), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} in /proc/{pid}/status")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's resident set high-water mark."""
    return memory_mb(pid, "VmHWM")


class ServerProcess:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.port = free_port()
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)], env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.address = f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.process.pid)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# --- the client ------------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    in_flight: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    server_cpu: float  # seconds
    client_cpu: float
    other_cpu: float  # the rest of the machine: other processes skew the figures

    def cpu_us_per_request(self, seconds: float) -> float:
        return seconds / self.requests * 1e6

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)


class Client:
    """One grpc.aio channel and the generated stub; identical for every target."""

    def __init__(self, server: ServerProcess, api_key: str, requests: Sequence[pb.GetIngressInfoRequest],
                 options: Sequence[tuple[str, Any]] = ()):
        self.server = server
        self.channel = grpc.aio.insecure_channel(server.address, options=options)
        self.call = numbers_pb2_grpc.NumbersStub(self.channel).GetIngressInfo
        self.metadata = (("authorization", f"Bearer {api_key}"),)
        self.requests = requests
        self.next = 0

    def request(self) -> pb.GetIngressInfoRequest:
        self.next = (self.next + 1) % len(self.requests)
        return self.requests[self.next]

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until a real GetIngressInfo succeeds: the server is up, migrated, and accepts the key."""
        server = self.server
        deadline = time.monotonic() + timeout
        while True:
            if server.process.poll() is not None:
                raise ServerExited(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
            try:
                await self.call(self.request(), metadata=self.metadata, timeout=2)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise BenchError(f"{server.name}: {error.code().name}: {error.details()}") from None
            if time.monotonic() > deadline:
                raise BenchError(f"{server.name} did not answer within {timeout:.0f} s:\n{server.log_tail()}")
            await asyncio.sleep(0.2)

    async def drive(self, in_flight: int, seconds: float) -> tuple[int, float, list[float]]:
        """Keeps `in_flight` calls outstanding for `seconds`; every call must succeed."""
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                request = self.request()
                started = time.perf_counter()
                try:
                    await self.call(request, metadata=self.metadata, timeout=10)
                except grpc.aio.AioRpcError as error:
                    raise BenchError(
                        f"GetIngressInfo({request.e164_number}) failed: {error.code().name}: {error.details()}"
                    ) from None
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return len(latencies), time.perf_counter() - started, latencies

    async def measure(self, target: str, in_flight: int, seconds: float) -> Run:
        await self.drive(in_flight, WARMUP_SECONDS)
        server0, client0, busy0 = self.server.cpu_seconds(), time.process_time(), busy_cpu_seconds()
        count, elapsed, latencies = await self.drive(in_flight, seconds)
        server_cpu = self.server.cpu_seconds() - server0
        client_cpu = time.process_time() - client0
        other_cpu = max(0.0, busy_cpu_seconds() - busy0 - server_cpu - client_cpu)
        return Run(target, in_flight, count, elapsed, latencies, server_cpu, client_cpu, other_cpu)

    async def close(self) -> None:
        await self.channel.close()


async def bench_target(
    name: str,
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    api_key: str,
    requests: Sequence[pb.GetIngressInfoRequest],
    seconds: float,
) -> tuple[list[Run], float]:
    """Starts the server, runs each in-flight level; returns the runs and the server's peak RSS in MB."""
    for attempt in range(3):
        server = ServerProcess(name, command, env, log_path)
        client = Client(server, api_key, requests)
        try:
            try:
                await client.wait_ready()
            except ServerExited:
                if attempt == 2:
                    raise
                continue  # the free port we picked was taken before the server bound it: pick another
            print(f"measuring {name} (pid {server.process.pid}) ...", file=sys.stderr, flush=True)
            runs = [await client.measure(name, n, seconds) for n in IN_FLIGHT]
            return runs, server.peak_rss_mb()
        finally:
            await client.close()
            server.stop()
    raise AssertionError("unreachable")


# --- report -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(runs: list[Run], rss: dict[str, float], echo: str, subjects: list[str]) -> None:
    print(
        f"\n{'target':<22} {'in-flight':>9} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'server CPU':>11} {'client CPU':>11} {'other CPU':>10}"
    )
    print(f"{'':<22} {'':>9} {'':>11} {'':>8} {'':>8} {'us/request':>11} {'us/request':>11} {'cores':>10}")
    for r in runs:
        print(
            f"{r.target:<22} {r.in_flight:>9} {r.rate:>11,.0f} {r.p50:>8.3f} {r.p99:>8.3f}"
            f" {r.cpu_us_per_request(r.server_cpu):>11,.0f} {r.cpu_us_per_request(r.client_cpu):>11,.0f}"
            f" {r.other_cpu / r.seconds:>10.2f}"
        )
    worst_other = max(r.other_cpu / r.seconds for r in runs)
    if worst_other > 0.2:
        print(
            f"warning: other processes (a database server on this machine among them) used up to "
            f"{worst_other:.2f} of {os.cpu_count()} CPUs during the runs; unless that was the database, "
            "the figures are skewed: rerun on a quiet machine"
        )
    by = {(r.target, r.in_flight): r for r in runs}
    top = max(IN_FLIGHT)
    for subject in subjects:
        print(f"\n{subject} against the targets:")
        ratio = by[subject, top].rate / by[echo, top].rate
        print(
            f"  throughput ratio at {top} in-flight  {ratio:6.2f}       "
            f"(target >= {MIN_THROUGHPUT_RATIO})   {verdict(ratio >= MIN_THROUGHPUT_RATIO)}"
        )
        for n in IN_FLIGHT:
            factor = by[subject, n].p99 / by[echo, n].p99
            print(
                f"  p99 / echo p99 at {n:>2} in-flight      {factor:6.2f}x      "
                f"(target <= {MAX_P99_FACTOR:.0f}x)     {verdict(factor <= MAX_P99_FACTOR)}"
            )
        p50 = by[subject, 1].p50
        print(
            f"  p50 at 1 in-flight                {p50:6.3f} ms    "
            f"(target < {MAX_P50_MS_ONE_IN_FLIGHT:.0f} ms)     {verdict(p50 < MAX_P50_MS_ONE_IN_FLIGHT)}"
        )
        print(
            f"  server peak RSS                  {rss[subject]:7.1f} MB    "
            f"(target < {MAX_PEAK_RSS_MB:.0f} MB)   {verdict(rss[subject] < MAX_PEAK_RSS_MB)}"
        )
    print(f"\n{echo} peak RSS {rss[echo]:.1f} MB (for reference)")


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=100_000, help="numbers to load (default 100000)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument(
        "--database-url",
        help="database to load and serve from (default: a SQLite file in a temporary folder); "
        "the bench adds a workspace, a key and the numbers, and removes them afterwards",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and the loaded rows")
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.numbers < 1 or args.duration <= 0:
        parser.error("--numbers and --duration must be positive")
    return args


async def bench(args: argparse.Namespace, workdir: Path, url: str, api_key: str, numbers: list[str]) -> None:
    rng = random.Random(7)
    requests = [pb.GetIngressInfoRequest(e164_number=e164) for e164 in rng.choices(numbers, k=50_000)]
    base_env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_SHUTDOWN_GRACE": "1"}
    echo = "echo (grpc.aio)"
    targets = [
        (echo, [sys.executable, str(Path(__file__).resolve()), "--serve-echo"], base_env),
        ("voxplane", [*voxplane_command(), "serve", "all"], {**base_env, "VOXPLANE_LOG_LEVEL": "WARNING"}),
        ("voxplane, INFO logs", [*voxplane_command(), "serve", "all"], {**base_env, "VOXPLANE_LOG_LEVEL": "INFO"}),
    ]
    runs: list[Run] = []
    rss: dict[str, float] = {}
    for index, (name, command, env) in enumerate(targets):
        log_path = workdir / f"server-{index}.log"
        target_runs, rss[name] = await bench_target(
            name, command, env, log_path, api_key, requests, args.duration
        )
        runs += target_runs
    report(runs, rss, echo, [name for name, _, _ in targets[1:]])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_echo:
        asyncio.run(serve_echo(args.port))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="voxplane-bench-"))
    url = args.database_url or f"sqlite:///{workdir / 'voxplane.db'}"
    env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_LOG_LEVEL": "WARNING"}
    workspace_name = f"bench-{secrets.token_hex(4)}"
    workspace_created = False
    try:
        started = time.perf_counter()
        cli(env, "migrate")
        cli(env, "workspaces", "create", workspace_name)
        workspace_created = True
        api_key = cli(env, "keys", "create", "--workspace", workspace_name, "--role", "service")
        numbers = insert_numbers(url, workspace_name, args.numbers)
        backend = url.split(":", 1)[0]
        print(
            f"GetIngressInfo: {args.numbers:,} numbers loaded into {backend} in {time.perf_counter() - started:.1f} s; "
            f"{args.duration:g} s per run after {WARMUP_SECONDS:g} s warmup; "
            f"Python {platform.python_version()}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs",
            flush=True,
        )
        asyncio.run(bench(args, workdir, url, api_key, numbers))
        return 0
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        clean_up(args, workdir, url, workspace_name if workspace_created else None, "server logs, SQLite database")


if __name__ == "__main__":
    sys.exit(main())
