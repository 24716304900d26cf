"""WatchCallEvents streams on one server process, and its memory: the --streams part of bench/events.py.

"1,000 concurrent WatchCallEvents streams on one server process under 300 MB RSS". Migrates a SQLite
file in a temporary folder (or `--database-url`), makes a workspace and a member key, starts `voxplane
serve all` as a process of its own, and opens `--watchers` WatchCallEvents streams of the whole
workspace (grpc.aio, spread over `--channels` channels, heartbeat every second, so each stream's first
message tells it is open). With every stream open it places `--watch-calls` calls (to +15005550002:
rings, then BUSY: three events each) and waits until every stream has received every event, in order
and once. Prints the time to open the streams, the fan-out delay (the event's network time to its
arrival at a stream: p50, p99, max over every stream and event), the server's RSS before the streams,
with them, and its peak (VmHWM), and PASS/FAIL on the peak under 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
from calls import CallsLoad, member_keys  # bench/calls.py: its load's setup serves here too
from ingress import BenchError, ServerExited, ServerProcess, cli, memory_mb, voxplane_command  # bench/ingress.py

from voxplane.calls.v1 import calls_pb2, calls_pb2_grpc

MAX_RSS_MB = 300
BUSY = "+15005550002"  # the simulated network: rings, then BUSY
EVENTS_PER_CALL = 3  # NEW_CALL, RINGING, HANGUP


class Watcher:
    """One stream: when it opened, and each event it received with its arrival time."""

    def __init__(self, stub: calls_pb2_grpc.CallsStub, metadata: tuple[tuple[str, str], ...]):
        self.call = stub.WatchCallEvents(
            calls_pb2.WatchCallEventsRequest(heartbeat_interval={"seconds": 1}), metadata=metadata
        )
        self.opened = asyncio.get_running_loop().create_future()
        self.events: list[tuple[calls_pb2.CallEvent, datetime]] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                if not self.opened.done():
                    self.opened.set_result(None)
                if response.HasField("event"):
                    self.events.append((response.event, datetime.now(UTC)))
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                if not self.opened.done():
                    self.opened.set_exception(BenchError(f"WatchCallEvents: {error.code().name}: {error.details()}"))
                raise


async def streams_run(args: argparse.Namespace, url: str, workdir: Path, env: dict[str, str]) -> bool:
    workspace = f"bench-events-{secrets.token_hex(4)}"
    cli(env, "workspaces", "create", workspace)
    (key,) = member_keys(url, workspace, 1)
    metadata = (("authorization", f"Bearer {key}"),)
    for attempt in range(3):
        server = ServerProcess("voxplane", [*voxplane_command(), "serve", "all"], env, workdir / "server.log")
        channels = [grpc.aio.insecure_channel(server.address) for _ in range(args.channels)]
        stubs = [calls_pb2_grpc.CallsStub(channel) for channel in channels]
        watchers: list[Watcher] = []
        try:
            load = CallsLoad(server, [key], BUSY)
            try:
                await load.wait_ready()
            except ServerExited:
                if attempt == 2:
                    raise
                continue  # the free port picked was taken before the server bound it: pick another
            await load.create_agents(1)
            before = memory_mb(server.process.pid, "VmRSS")
            started = time.perf_counter()
            watchers = [Watcher(stubs[i % len(stubs)], metadata) for i in range(args.watchers)]
            await asyncio.wait_for(asyncio.gather(*(w.opened for w in watchers)), 120)
            opening = time.perf_counter() - started
            idle = memory_mb(server.process.pid, "VmRSS")
            print(f"streams: {args.watchers:,} open in {opening:.2f} s; placing {args.watch_calls} calls ...", file=sys.stderr,
                  flush=True)
            refs = [
                (await stubs[0].CreateCall(calls_pb2.CreateCallRequest(source=load.agent_refs[0], destination=BUSY),
                                           metadata=metadata, timeout=10)).ref
                for _ in range(args.watch_calls)
            ]
            expected = len(refs) * EVENTS_PER_CALL
            deadline = time.monotonic() + 120
            while any(len(w.events) < expected for w in watchers):
                if time.monotonic() > deadline:
                    short = sum(len(w.events) < expected for w in watchers)
                    raise BenchError(f"{short} streams did not get all {expected} events within 120 s")
                await asyncio.sleep(0.1)
            loaded = memory_mb(server.process.pid, "VmRSS")
            peak = server.peak_rss_mb()
        finally:
            for watcher in watchers:
                watcher.call.cancel()
            await asyncio.gather(*(w.task for w in watchers), return_exceptions=True)
            for channel in channels:
                await channel.close()
            server.stop()
        whole = {(e.call_ref, e.sequence) for e, _ in watchers[0].events}
        in_order = all(
            [e.event_id for e, _ in w.events] == [e.event_id for e, _ in watchers[0].events] for w in watchers
        )
        complete = whole == {(ref, s) for ref in refs for s in range(1, EVENTS_PER_CALL + 1)} and in_order
        delays = sorted((arrived - e.network_time.ToDatetime(UTC)).total_seconds() * 1000
                        for w in watchers for e, arrived in w.events)
        print(f"streams: {args.watchers:,} WatchCallEvents streams over {args.channels} channels, {url.split(':')[0]}; "
              f"Python {platform.python_version()}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs")
        print(f"  opened in {opening:.2f} s; {len(refs)} calls, {expected} events each stream, "
              f"{len(delays):,} deliveries: {'every stream got every event once, in the same order' if complete else 'EVENTS MISSING OR OUT OF ORDER'}")
        print(f"  fan-out delay (network time -> arrival): p50 {statistics.median(delays):.0f} ms, "
              f"p99 {delays[int(len(delays) * 0.99) - 1]:.0f} ms, max {delays[-1]:.0f} ms")
        print(f"  server RSS: {before:.0f} MB before the streams, {idle:.0f} MB with them idle, "
              f"{loaded:.0f} MB after the events; peak (VmHWM) {peak:.0f} MB")
        passed = peak < MAX_RSS_MB and complete
        print(f"  {'PASS' if passed else 'FAIL'}: peak RSS {peak:.0f} MB with {args.watchers:,} streams "
              f"(target: under {MAX_RSS_MB} MB, every event delivered)")
        return passed
    raise BenchError("the server never started")


def streams(args: argparse.Namespace) -> None:
    """The --streams part: many streams on one server process, and its memory."""
    workdir = Path(tempfile.mkdtemp(prefix="voxplane-bench-events-"))
    url = args.database_url or f"sqlite:///{workdir / 'voxplane.db'}"
    env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_LOG_LEVEL": "WARNING", "VOXPLANE_SHUTDOWN_GRACE": "1",
           "VOXPLANE_SIM_RING_DELAY": "0.01", "VOXPLANE_SIM_ANSWER_DELAY": "0.01"}
    try:
        cli(env, "migrate")
        asyncio.run(streams_run(args, url, workdir, env))
    finally:
        if args.keep:
            print(f"kept {workdir} (server log, SQLite database)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("streams")
    group.add_argument("--watchers", type=int, default=1000, help="concurrent streams (default 1000)")
    group.add_argument("--channels", type=int, default=10, help="client channels they share (default 10)")
    group.add_argument("--watch-calls", type=int, default=20, help="calls placed while they are open (default 20)")
