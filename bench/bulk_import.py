"""Bulk import: `Numbers.import_numbers_csv` into `voxplane serve all`, numbers/s and memory by file size.

Writes CSV files of valid numbers (libphonenumber-valid US numbers, a mix of the four kinds of
routing), starts `voxplane serve all` afresh for each file, on one database (so each server's peak
RSS is that file's), and imports the file with the blocking client in a process of its own (so the
client's peak RSS is that file's too). Then imports the smallest file again: every row is there
already, so that run measures a rerun after a failure.

Prints numbers/s, the server's and the client's CPU per number and peak RSS for each file, with
PASS/FAIL against the targets: at least 10,000 numbers/s into SQLite, and memory flat as the file
grows. It measures, it does not judge: the exit status is 0 whatever the figures.

    .venv/bin/python bench/bulk_import.py [--sizes 20000,100000,300000] [--batch-size 1000]
                                          [--database-url postgresql://...] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from ingress import (  # bench/ingress.py: the same server process and database helpers
    BenchError,
    ServerExited,
    ServerProcess,
    busy_cpu_seconds,
    clean_up,
    cli,
    valid_numbers,
    voxplane_command,
)
from sqlalchemy import func, select

from voxplane import Numbers, UnavailableError
from voxplane.services.numbers.models import Number
from voxplane.services.persistence.db import one_shot_engine
from voxplane.services.persistence.tenancy import Workspace

# Targets, from the issue that asked for this bench.
MIN_NUMBERS_PER_SECOND = 10_000
MAX_RSS_GROWTH_MB = 10.0  # peak RSS, largest file against the one before: "memory flat as the file grows"

HEADER = ("e164_number", "provider_ref", "name", "aor_link", "webhook", "forward_sip_to")


# --- files ------------------------------------------------------------------------------------


def row(index: int, e164: str) -> tuple[str, ...]:
    """A row routed one of four ways, as a real import mixes them (two of them webhooks, shared)."""
    digits = e164[1:]
    routing = [
        (f"sip:{digits}@pbx.bench.example", "", ""),
        ("", "https://hooks.bench.example/voice", ""),
        ("", "https://hooks.bench.example/ivr-main", ""),
        ("", "", f"sip:+{digits}@carrier.bench.example"),
    ][index % 4]
    return (e164, "bench-trunk", f"Line {index}", *routing)


def punctuated(e164: str) -> str:
    """A US E.164 number as people write it: '+1 (415) 555-0100' or '+1 415.555.0100', alternately."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    return f"+1 ({area}) {exchange}-{line}" if int(line) % 2 else f"+1 {area}.{exchange}.{line}"


def write_files(workdir: Path, sizes: list[int], taken: set[str], formatted: int) -> tuple[list[Path], Path | None]:
    """One CSV file per size, written as generated (the bench too keeps memory flat), and one of
    `formatted` rows whose numbers are punctuated rather than E.164; numbers unique across files."""
    fresh = valid_numbers(random.Random(20261125), taken)
    paths = []
    for name, size, spell in [*((f"numbers-{size}", size, str) for size in sizes),
                              *([("formatted", formatted, punctuated)] if formatted else [])]:
        path = workdir / f"{name}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            for i in range(size):
                e164, *rest = row(i, next(fresh))
                writer.writerow((spell(e164), *rest))
        paths.append(path)
    return (paths[:-1], paths[-1]) if formatted else (paths, None)


def stored(url: str, workspace_name: str) -> tuple[int, int]:
    """(numbers of the workspace, distinct E.164 numbers among them)."""
    engine = one_shot_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count(), func.count(func.distinct(Number.e164_number)))
                .join(Workspace, Workspace.id == Number.workspace_id)
                .where(Workspace.name == workspace_name)
            ).one()  # type: ignore[return-value]
    finally:
        engine.dispose()


def taken_numbers(url: str) -> set[str]:
    engine = one_shot_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(select(Number.e164_number)))
    finally:
        engine.dispose()


# --- the client process ---------------------------------------------------------------------


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} in /proc/self/status")


def import_file(path: str, endpoint: str, api_key: str, batch_size: int) -> None:
    """The client process: imports one file and prints what it measured as one JSON line."""
    with Numbers(endpoint=endpoint, api_key=api_key, timeout=60) as numbers:
        numbers.list_numbers(page_size=1)  # channel up and modules loaded before the baseline
        before = rss_mb()
        cpu0 = time.process_time()
        summary = numbers.import_numbers_csv(path, batch_size=batch_size, progress=sys.stderr.isatty())
        cpu = time.process_time() - cpu0
    print(json.dumps({
        "rows": summary.rows, "batches": summary.batches, "seconds": summary.seconds, "cpu": cpu,
        "rss_before": before, "rss_peak": rss_mb("VmHWM"),
    }))


# --- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    rows: int
    seconds: float
    server_cpu: float
    client_cpu: float
    other_cores: float  # what the rest of the machine used meanwhile
    server_rss_before: float
    server_rss_peak: float
    client_rss_before: float
    client_rss_peak: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def us_per_number(self, cpu: float) -> float:
        return cpu / self.rows * 1e6


def wait_ready(server: ServerProcess, api_key: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with Numbers(endpoint=server.address, api_key=api_key, timeout=2, max_attempts=1) as numbers:
        while True:
            if server.process.poll() is not None:
                raise ServerExited(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
            try:
                numbers.list_numbers(page_size=1)
                return
            except UnavailableError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the server did not answer within {timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.2)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_rss_mb(server: ServerProcess) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmRSS for the server")


def run_import(label: str, path: Path, env: dict[str, str], workdir: Path, api_key: str, batch_size: int) -> Run:
    """Starts a server, imports `path` from a client process, stops the server."""
    for attempt in range(3):
        server = ServerProcess("voxplane", [*voxplane_command(), "serve", "all"], env, workdir / f"server-{label}.log")
        try:
            try:
                wait_ready(server, api_key)
            except ServerExited:
                if attempt == 2:
                    raise
                continue  # the free port we picked was taken before the server bound it: pick another
            print(f"importing {path.name} ({label}) ...", file=sys.stderr, flush=True)
            rss_before, server0, busy0 = server_rss_mb(server), server.cpu_seconds(), busy_cpu_seconds()
            children0, window0 = children_cpu_seconds(), time.perf_counter()
            child = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--import-file", str(path),
                 "--endpoint", server.address, "--api-key", api_key, "--batch-size", str(batch_size)],
                stdout=subprocess.PIPE, text=True, env=env,
            )
            if child.returncode != 0:
                raise BenchError(f"importing {path.name} failed (exit {child.returncode}); see above")
            server_cpu = server.cpu_seconds() - server0
            # The rest of the machine meanwhile, in cores: the client process counts whole (its start too).
            window = time.perf_counter() - window0
            other = busy_cpu_seconds() - busy0 - server_cpu - (children_cpu_seconds() - children0)
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            return Run(
                label, figures["rows"], figures["seconds"], server_cpu, figures["cpu"], max(0.0, other) / window,
                rss_before, server.peak_rss_mb(), figures["rss_before"], figures["rss_peak"],
            )
        finally:
            server.stop()
    raise AssertionError("unreachable")


# --- report ---------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(runs: list[Run], rerun: Run | None, formatted: Run | None = None) -> None:
    print(
        f"\n{'file':<18} {'numbers':>9} {'seconds':>8} {'numbers/s':>10} {'server CPU':>11} {'client CPU':>11}"
        f" {'other CPU':>10} {'server RSS MB':>14} {'client RSS MB':>14}"
    )
    print(f"{'':<18} {'':>9} {'':>8} {'':>10} {'us/number':>11} {'us/number':>11} {'cores':>10}"
          f" {'start > peak':>14} {'start > peak':>14}")
    for r in [*runs, *([rerun] if rerun else []), *([formatted] if formatted else [])]:
        print(
            f"{r.label:<18} {r.rows:>9,} {r.seconds:>8.2f} {r.rate:>10,.0f} {r.us_per_number(r.server_cpu):>11.0f}"
            f" {r.us_per_number(r.client_cpu):>11.0f} {r.other_cores:>10.2f}"
            f" {r.server_rss_before:>6.0f} > {r.server_rss_peak:<5.0f} {r.client_rss_before:>6.0f} > {r.client_rss_peak:<5.0f}"
        )
    worst_other = max(r.other_cores for r in runs)
    if worst_other > 0.2:
        print(
            f"warning: other processes (a database server on this machine among them) used up to "
            f"{worst_other:.2f} of {os.cpu_count()} CPUs during the runs; unless that was the database, "
            "the figures are skewed: rerun on a quiet machine"
        )
    print("\ntargets:")
    for r in [*runs, *([formatted] if formatted else [])]:
        print(
            f"  {r.label:<16} {r.rate:>10,.0f} numbers/s   (target >= {MIN_NUMBERS_PER_SECOND:,})"
            f"   {verdict(r.rate >= MIN_NUMBERS_PER_SECOND)}"
        )
    if len(runs) < 2:
        print("  memory: give two sizes or more (--sizes) to see whether it grows with the file")
        return
    # Flat: the largest file needs no more memory than the one before it.
    before, largest = runs[-2], runs[-1]
    for side in ("server", "client"):
        a, b = getattr(before, f"{side}_rss_peak"), getattr(largest, f"{side}_rss_peak")
        print(
            f"  {side} peak RSS {a:.0f} MB at {before.rows:,} numbers, {b:.0f} MB at {largest.rows:,}: "
            f"{b - a:+.1f} MB   (target <= +{MAX_RSS_GROWTH_MB:.0f} MB)   {verdict(b - a <= MAX_RSS_GROWTH_MB)}"
        )


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000,300000", help="rows per file (default 20000,100000,300000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per BatchCreateNumbers (default 1000)")
    parser.add_argument("--formatted", type=int, default=20_000,
                        help="rows of a last file whose numbers are punctuated, '+1 (415) 555-0100' (default 20000; 0: none)")
    parser.add_argument(
        "--database-url",
        help="database to import into (default: a SQLite file in a temporary folder); the bench adds a "
        "workspace, a key and the numbers, and removes them afterwards",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (files, logs, database)")
    parser.add_argument("--import-file", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted(int(s) for s in args.sizes.split(","))
    except ValueError:
        parser.error("--sizes takes numbers separated by commas, e.g. 20000,100000")
    if not args.sizes or args.sizes[0] < 1 or not 1 <= args.batch_size <= 1000:
        parser.error("--sizes must be positive and --batch-size 1 to 1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.import_file:
        import_file(args.import_file, args.endpoint, args.api_key, args.batch_size)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="voxplane-bulk-"))
    url = args.database_url or f"sqlite:///{workdir / 'voxplane.db'}"
    env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_LOG_LEVEL": "INFO", "VOXPLANE_SHUTDOWN_GRACE": "1"}
    workspace_name = f"bulk-{secrets.token_hex(4)}"
    workspace_created = False
    try:
        cli(env, "migrate")
        cli(env, "workspaces", "create", workspace_name)
        workspace_created = True
        api_key = cli(env, "keys", "create", "--workspace", workspace_name, "--role", "member")
        started = time.perf_counter()
        files, formatted_file = write_files(workdir, args.sizes, taken_numbers(url), args.formatted)
        backend = url.split(":", 1)[0]
        print(
            f"bulk import into {backend}: files of {', '.join(f'{s:,}' for s in args.sizes)} numbers written in "
            f"{time.perf_counter() - started:.1f} s; batches of {args.batch_size}; "
            f"Python {platform.python_version()}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs",
            flush=True,
        )
        runs, total = [], 0
        for size, path in zip(args.sizes, files, strict=True):
            runs.append(run_import(f"{size:,} rows", path, env, workdir, api_key, args.batch_size))
            total += size
            if stored(url, workspace_name) != (total, total):
                raise BenchError(f"after {path.name} the workspace holds {stored(url, workspace_name)} numbers, not {total}")
        rerun = run_import(f"{args.sizes[0]:,} again", files[0], env, workdir, api_key, args.batch_size)
        if stored(url, workspace_name) != (total, total):
            raise BenchError("importing a file again created numbers")
        formatted = None
        if formatted_file is not None:
            formatted = run_import(f"{args.formatted:,} formatted", formatted_file, env, workdir, api_key,
                                   args.batch_size)
            total += args.formatted
            if stored(url, workspace_name) != (total, total):
                raise BenchError(f"the formatted file left {stored(url, workspace_name)} numbers, not {total}")
        report(runs, rerun, formatted)
        return 0
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        clean_up(args, workdir, url, workspace_name if workspace_created else None,
                 "CSV files, server logs, SQLite database")


if __name__ == "__main__":
    sys.exit(main())
