"""Click-to-call on the real voice network, on loopback: calls set up and torn down per second, calls held at
once, and how long a set-up takes.

Starts `voxplane edge run` (Kamailio, and rtpengine with a media port range sized for --concurrent calls),
`voxplane serve all` with the SIP gateway behind the edge (VOXPLANE_CALL_GATEWAY=sip), and sipp as every
phone: two agents registered at the edge, whose phones answer at once (a quiet one, and a talking one that
plays G.711 audio over and over), and a carrier trunk that answers every outside number at once and echoes
the audio it gets. Each call is CreateCall from an agent to an outside number: the gateway rings the
agent's phone through Kamailio, then the number through the trunk, and bridges them at rtpengine.

  rate  --rate calls/s for --duration s from the quiet agent, each hung up (HangupCall) --talk s after it
        was answered: calls created, answered and ended NORMAL_CLEARING, and how far the ends trailed.
  held  --concurrent calls at --rate, the first --talking from the talking agent, all held --hold s and
        then hung up: calls up at Calls and at rtpengine, calls whose RTP grew both ways during the hold,
        the peak RSS of the Calls server (the gateway's process) and of rtpengine.

Set-up time: the ANSWER event's network_time (when the gateway saw the far leg's 200, both legs answered)
less the moment CreateCall was sent. The phones answer at once, so no answer delay is subtracted.
It measures, it does not judge: the exit status is 0 whatever the figures, nonzero when something breaks.

    .venv/bin/python bench/sip.py [--rate 50] [--duration 10] [--concurrent 500] [--hold 30]
                                  [--database-url postgresql://...] [--log-level WARNING] [--keep]
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
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from calls import member_keys  # bench/calls.py
from ingress import (  # bench/ingress.py: the same process helpers
    BenchError,
    ServerProcess,
    cli,
    free_port,
    peak_rss_mb,
    valid_numbers,
    voxplane_command,
)

from voxplane import AsyncAgents, AsyncCalls
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls.rtpengine import NgClient
from voxplane.services.calls.sip import A_TAG, B_TAG

MIN_CALLS_PER_SECOND = 50.0
MIN_CONCURRENT, MIN_TALKING = 500, 50
MAX_SETUP_P99_MS = 100.0

HERE = Path(__file__).resolve().parent
REGISTER = HERE.parent / "tests" / "sipp" / "register.xml"  # the edge tests' REGISTER with digest credentials
T = pb.CallEventType


@dataclass
class Tracked:
    """What the workspace's event stream said of one call."""

    sent: float = 0.0  # time.time() when CreateCall was sent
    answered: float | None = None  # the ANSWER event's network time
    ended: float | None = None
    cause: str = ""


@dataclass
class Phase:
    name: str
    offered: int
    calls: dict[str, Tracked] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    max_lag_ms: float = 0.0

    def setup_ms(self) -> list[float]:
        return sorted((c.answered - c.sent) * 1000 for c in self.calls.values() if c.answered is not None)

    def causes(self) -> Counter[str]:
        return Counter(c.cause or "not ended" for c in self.calls.values())

    def failed(self) -> int:
        return sum(self.errors.values()) + sum(1 for c in self.calls.values() if c.cause != "HANGUP_CAUSE_NORMAL_CLEARING")


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


class Peers:
    """The edge (Kamailio and rtpengine), the sipp phones and trunk, and the Calls server behind the edge."""

    def __init__(self, args: argparse.Namespace, workdir: Path, env: dict[str, str]):
        self.workdir, self.env = workdir, env
        self.processes: list[subprocess.Popen[bytes]] = []
        self.edge_port, self.gateway_port, self.trunk_port, self.ng_port = (free_port() for _ in range(4))
        self.domain = "sip.bench.example"
        # Four media ports a call (two legs, RTP and RTCP each), and room for calls still being deleted.
        low = 30000
        self.rtp_ports = (low, low + max(1000, args.concurrent * 6))
        self.edge = self.spawn("edge", [
            *voxplane_command(), "edge", "run", "--listen", f"127.0.0.1:{self.edge_port}", "--domain", self.domain,
            "--gateway", f"127.0.0.1:{self.gateway_port}", "--trunk", f"127.0.0.1:{self.trunk_port}",
            "--database-url", env["VOXPLANE_DATABASE_URL"], "--work-dir", str(workdir / "edge"),
            "--rtpengine-ng", f"127.0.0.1:{self.ng_port}", "--rtp-ports", f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
        ], {**env, "VOXPLANE_EDGE_FLOOD_REQUESTS": "1000000"})  # every phone is 127.0.0.1: not a flood
        self.trunk = self.phone("trunk", "answer.xml", self.trunk_port, "-rtp_echo")
        self.server = ServerProcess("calls", [*voxplane_command(), "serve", "all"], {
            **env, "VOXPLANE_CALL_GATEWAY": "sip", "VOXPLANE_SIP_PORT": str(self.gateway_port),
            "VOXPLANE_SIP_PROXY": f"127.0.0.1:{self.edge_port}", "VOXPLANE_SIP_TRUNK": f"sip:127.0.0.1:{self.trunk_port}",
            "VOXPLANE_RTPENGINE_NG": f"127.0.0.1:{self.ng_port}",
        }, workdir / "calls.log")

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(command, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        self.processes.append(process)
        return process

    def phone(self, name: str, scenario: str, port: int, *options: str) -> subprocess.Popen[bytes]:
        """A sipp UAS taking every call that reaches 127.0.0.1:`port`, for as long as the bench runs."""
        return self.spawn(name, ["sipp", "-sf", str(HERE / "sipp" / scenario), "-i", "127.0.0.1", "-p", str(port),
                                 "-mi", "127.0.0.1", "-mp", str(free_port()), "-nostdin", *options])

    def register(self, username: str, secret: str, port: int) -> None:
        done = subprocess.run(
            ["sipp", f"127.0.0.1:{self.edge_port}", "-sf", str(REGISTER), "-i", "127.0.0.1", "-p", str(port),
             "-s", username, "-au", username, "-ap", secret, "-key", "domain", self.domain, "-m", "1", "-nostdin",
             "-timeout", "10s", "-timeout_error"], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise BenchError(f"{username} did not register at the edge: {done.stdout[-500:]}")

    def rtpengine_pid(self) -> int | None:
        """The rtpengine `voxplane edge run` started (a child of it)."""
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "comm").read_text().strip() == "rtpengine" and \
                        int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.edge.pid:
                    return int(entry.name)
            except (OSError, ValueError, IndexError):
                continue
        return None

    def stop(self) -> None:
        self.server.stop()
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


class Bench:
    def __init__(self, peers: Peers, api_key: str, args: argparse.Namespace):
        self.peers, self.args = peers, args
        self.calls = AsyncCalls(endpoint=peers.server.address, api_key=api_key, max_attempts=1, timeout=30)
        self.api_key = api_key
        self.tracked: dict[str, Tracked] = {}
        self.numbers = valid_numbers(random.Random(20261202), set())
        self.hangups: set[asyncio.Task[None]] = set()
        self.hang_up_after: float | None = None  # seconds after ANSWER; None: the phase hangs up itself
        self.ng_client: NgClient | None = None

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.calls.list_active_calls()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or self.peers.server.process.poll() is not None:
                    raise BenchError(f"the Calls server never answered:\n{self.peers.server.log_tail()}") from None
                await asyncio.sleep(0.3)

    async def agents(self) -> tuple[str, str]:
        """The quiet and the talking agent, each registered from the port its sipp phone then answers on."""
        refs = []
        async with AsyncAgents(endpoint=self.peers.server.address, api_key=self.api_key) as agents:
            for name, scenario in (("quiet", "answer.xml"), ("talking", "talk.xml")):
                secret = "Bench-" + secrets.token_hex(8)
                agent = await agents.create_agent(name=f"Bench {name}", username=f"{name}-{secrets.token_hex(3)}",
                                                  secret=secret, domains=[self.peers.domain])
                port = free_port()
                await asyncio.to_thread(self.peers.register, agent.username, secret, port)
                self.peers.phone(name, scenario, port)
                refs.append(agent.ref)
        return refs[0], refs[1]

    async def watch(self) -> None:
        """Follows the workspace's events: answers and ends of every call placed."""
        async for event in self.calls.watch_call_events(heartbeat_interval=1):
            if not event.HasField("event"):
                continue
            call = self.tracked.setdefault(event.event.call_ref, Tracked())
            at = event.event.network_time.ToMicroseconds() / 1e6
            if event.event.type == T.CALL_EVENT_TYPE_ANSWER:
                call.answered = at
                if self.hang_up_after is not None:
                    self.hang_up(event.event.call_ref, self.hang_up_after)
            elif event.event.type == T.CALL_EVENT_TYPE_HANGUP:
                call.ended, call.cause = at, pb.HangupCause.Name(event.event.hangup_cause)

    def hang_up(self, ref: str, after: float = 0.0) -> None:
        async def later() -> None:
            await asyncio.sleep(after)
            try:
                await self.calls.hangup_call(ref)
            except Exception as error:  # noqa: BLE001 - it ended meanwhile: its HANGUP says how
                print(f"HangupCall {ref}: {error}", file=sys.stderr)

        task = asyncio.create_task(later())
        self.hangups.add(task)
        task.add_done_callback(self.hangups.discard)

    async def place(self, phase: Phase, source: str) -> None:
        sent = time.time()
        try:
            call = await self.calls.create_call(source=source, destination=next(self.numbers), timeout=10)
        except Exception as error:  # noqa: BLE001 - the clients' errors: count them by type
            phase.errors[type(error).__name__] += 1
            return
        tracked = self.tracked.setdefault(call.ref, Tracked())
        tracked.sent = sent
        phase.calls[call.ref] = tracked

    async def open_loop(self, phase: Phase, sources: list[str]) -> None:
        """One CreateCall every 1/rate s on a fixed schedule, none waiting for another."""
        start, tasks = time.perf_counter() + 0.05, []
        for i, source in enumerate(sources):
            due = start + i / self.args.rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            phase.max_lag_ms = max(phase.max_lag_ms, (time.perf_counter() - due) * 1000)
            tasks.append(asyncio.create_task(self.place(phase, source)))
        await asyncio.gather(*tasks)

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def rate(self, quiet: str) -> tuple[Phase, float]:
        phase = Phase("rate", round(self.args.rate * self.args.duration))
        self.hang_up_after = self.args.talk
        started = time.time()
        await self.open_loop(phase, [quiet] * phase.offered)
        created = time.time()
        await self.until(lambda: all(c.ended for c in phase.calls.values()), 30 + self.args.talk)
        self.hang_up_after = None
        ends = [c.ended for c in phase.calls.values() if c.ended]
        trail = (max(ends) - created - self.args.talk) if ends else float("nan")
        print(f"rate: {len(phase.calls):,} calls created in {created - started:.1f} s; the last ended "
              f"{trail:+.2f} s after the last create plus the talk time", file=sys.stderr)
        return phase, trail

    async def ng(self, command: str, **arguments: object) -> dict:  # type: ignore[type-arg]
        """rtpengine's reply, over one NG client kept for the run (the hold phase queries each call twice)."""
        if self.ng_client is None:
            self.ng_client = await NgClient.connect("127.0.0.1", self.peers.ng_port, timeout=5)
        return await self.ng_client.command(command, **arguments)

    async def packets(self, ref: str) -> tuple[int, int]:
        """RTP packets rtpengine got from leg A and from leg B of the call."""
        tags = (await self.ng("query", call_id=ref))["tags"]
        return tuple(  # type: ignore[return-value]
            sum(s.get("stats", {}).get("packets", 0) for m in tags[tag]["medias"] for s in m["streams"])
            for tag in (A_TAG, B_TAG)
        )

    async def held(self, quiet: str, talking: str) -> dict[str, object]:
        phase = Phase("held", self.args.concurrent)
        talkers = min(self.args.talking, self.args.concurrent)
        await self.open_loop(phase, [talking] * talkers + [quiet] * (self.args.concurrent - talkers))
        answered = await self.until(lambda: all(c.answered or c.ended for c in phase.calls.values()), 30)
        up_at_calls = len(await self.active())
        up_at_rtpengine = len((await self.ng("list", limit=100_000)).get("calls", []))
        talking_refs = list(phase.calls)[:talkers]
        before = {ref: await self.packets(ref) for ref in talking_refs}
        await asyncio.sleep(self.args.hold)
        after = {ref: await self.packets(ref) for ref in talking_refs}
        flowing = sum(1 for ref in talking_refs if after[ref][0] > before[ref][0] and after[ref][1] > before[ref][1])
        still_up = len(await self.active())
        gateway_mb = self.peers.server.peak_rss_mb()
        rtpengine = self.peers.rtpengine_pid()
        rtpengine_mb = peak_rss_mb(rtpengine) if rtpengine else float("nan")
        for ref in phase.calls:
            self.hang_up(ref)
        await self.until(lambda: all(c.ended for c in phase.calls.values()), 60)
        return {"phase": phase, "answered": answered, "up_at_calls": up_at_calls, "up_at_rtpengine": up_at_rtpengine,
                "still_up": still_up, "flowing": flowing, "talkers": talkers, "gateway_mb": gateway_mb,
                "rtpengine_mb": rtpengine_mb}

    async def active(self) -> list[str]:
        refs, token = [], ""
        while True:
            page = await self.calls.list_active_calls(page_size=1000, page_token=token)
            refs += [call.ref for call in page.calls]
            if not (token := page.next_page_token):
                return refs

    async def close(self) -> None:
        for task in list(self.hangups):
            task.cancel()
        if self.ng_client is not None:
            self.ng_client.close()
        await self.calls.close()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(rate: Phase, trail: float, held: dict, args: argparse.Namespace) -> None:  # type: ignore[type-arg]
    setup = rate.setup_ms()
    print(f"\nrate: {args.rate:g} calls/s offered for {args.duration:g} s, {args.talk:g} s of talk each: "
          f"{len(rate.calls):,} created, ends {dict(rate.causes())}, CreateCall errors {dict(rate.errors)}, "
          f"generator late by up to {rate.max_lag_ms:.1f} ms")
    print(f"      set-up time ms: p50 {percentile(setup, 50):.1f}  p99 {percentile(setup, 99):.1f}  "
          f"max {max(setup, default=float('nan')):.1f}")
    phase: Phase = held["phase"]
    print(f"held: {len(phase.calls):,} calls placed at {args.rate:g}/s, all answered: {held['answered']}; "
          f"up at Calls {held['up_at_calls']:,}, at rtpengine {held['up_at_rtpengine']:,}; after {args.hold:g} s "
          f"still up {held['still_up']:,}; RTP grew both ways on {held['flowing']} of {held['talkers']} talking calls; "
          f"ends {dict(phase.causes())}")
    print(f"      peak RSS: Calls server (the gateway) {held['gateway_mb']:.1f} MB, rtpengine {held['rtpengine_mb']:.1f} MB")
    held_setup = phase.setup_ms()
    print(f"      set-up time ms while filling: p50 {percentile(held_setup, 50):.1f}  p99 {percentile(held_setup, 99):.1f}")
    kept_up = len(rate.calls) == rate.offered and rate.failed() == 0 and trail < 2.0
    print("\nagainst the targets:")
    print(f"  {verdict(kept_up and args.rate >= MIN_CALLS_PER_SECOND)}  click-to-call calls/s set up and torn "
          f"down  {args.rate:g} offered, {rate.failed()} failed, ends trailing {trail:+.2f} s "
          f"(target >= {MIN_CALLS_PER_SECOND:.0f}/s, none failed)")
    print(f"  {verdict(held['still_up'] >= MIN_CONCURRENT and held['up_at_rtpengine'] >= MIN_CONCURRENT)}  concurrent "
          f"bridged calls held {args.hold:g} s  {held['still_up']:,} (target >= {MIN_CONCURRENT}, media at rtpengine on all)")
    print(f"  {verdict(held['flowing'] >= MIN_TALKING)}  calls with RTP flowing both ways  {held['flowing']} "
          f"(target >= {MIN_TALKING})")
    print(f"  {verdict(percentile(setup, 99) < MAX_SETUP_P99_MS)}  set-up time p99 at {args.rate:g}/s  "
          f"{percentile(setup, 99):.1f} ms (target < {MAX_SETUP_P99_MS:.0f} ms)")


async def run(args: argparse.Namespace, workdir: Path, url: str) -> None:
    env = {**os.environ, "VOXPLANE_DATABASE_URL": url, "VOXPLANE_LOG_LEVEL": args.log_level,
           "VOXPLANE_SHUTDOWN_GRACE": "1"}
    cli(env, "migrate")
    workspace = f"bench-sip-{secrets.token_hex(4)}"
    cli(env, "workspaces", "create", workspace)
    api_key = member_keys(url, workspace, 1)[0]
    peers = Peers(args, workdir, env)
    bench = Bench(peers, api_key, args)
    watcher: asyncio.Task[None] | None = None
    try:
        await bench.ready()
        quiet, talking = await bench.agents()
        watcher = asyncio.create_task(bench.watch())
        await asyncio.sleep(1)  # the stream is open before the first call
        print(f"click-to-call through Kamailio, the SIP gateway and rtpengine on loopback, {url.split(':')[0]}, "
              f"server logs at {args.log_level}; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        rate, trail = await bench.rate(quiet)
        held = await bench.held(quiet, talking)
        report(rate, trail, held, args)
    finally:
        if watcher:
            watcher.cancel()
        await bench.close()
        peers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=MIN_CALLS_PER_SECOND, help="calls/s offered (default 50)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the rate phase (default 10)")
    parser.add_argument("--talk", type=float, default=1.0, help="seconds each rate-phase call stays up (default 1)")
    parser.add_argument("--concurrent", type=int, default=MIN_CONCURRENT, help="calls held at once (default 500)")
    parser.add_argument("--talking", type=int, default=MIN_TALKING, help="held calls with audio (default 50)")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds the calls are held (default 30)")
    parser.add_argument("--database-url", help="a migrated-or-empty database (default: a temporary SQLite file)")
    parser.add_argument("--log-level", default="WARNING", help="the servers' VOXPLANE_LOG_LEVEL (default WARNING)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args(argv)
    missing = [name for name in ("kamailio", "rtpengine", "sipp") if shutil.which(name) is None]
    if missing:
        print(f"bench/sip.py needs {', '.join(missing)} (apt-get install kamailio kamailio-sqlite-modules "
              "kamailio-postgres-modules rtpengine-daemon sip-tester)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="voxplane-bench-sip-"))
    url = args.database_url or f"sqlite:///{workdir / 'voxplane.db'}"
    try:
        asyncio.run(run(args, workdir, url))
    except BenchError as error:
        print(f"bench/sip.py: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
