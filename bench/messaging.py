"""Messaging: SendMessage accepted per second, end to end through the simulated carrier, scheduled
messages on time with flat memory, and segment counting. Prints figures and PASS/FAIL per target.

Parts (`--part segments|send|scheduled|all`, default all):

segments: `segments.count` over a mix of the tricky bodies (extension characters on a boundary, smart
quotes, decomposed accents, emoji on a boundary, CRLF) and plain 160-character ones, in this process.
Target: at least 100,000 bodies per second.

send: starts `voxplane serve all` on a fresh SQLite file, then `--count` SendMessage (a number of the
workspace as sender, to the simulated carrier's delivering number) with `--in-flight` requests
outstanding (grpc.aio, the generated stub). Accepted/s is the count over the time the last answer came;
end to end is the count over first acceptance -> last DELIVERED, read from the status history. Targets:
at least 1,000 accepted per second, at least 300 per second end to end.

scheduled: `--scheduled` messages (100,000 times `--scale`) sent with their send times spread evenly over
`--spread` seconds (600 times `--scale`) starting once they are all accepted (SendMessage's minimum is
60 s ahead, so the first is due 65 s plus the count at 120/s ahead). While they go
out the server's resident set is sampled every second. Targets: each sent (SENDING) within 1 s of its
time, and memory flat: the largest sample at most `--rss-growth` MB over the one taken when the first
went out.

    .venv/bin/python bench/messaging.py [--part all] [--count 5000] [--in-flight 200] [--scale 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ingress import ServerProcess, voxplane_command  # bench/ingress.py: the same server process helpers
from sqlalchemy import func, select

from voxplane import Numbers
from voxplane.messaging.v1 import messaging_pb2, messaging_pb2_grpc
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Role
from voxplane.services.messaging import segments
from voxplane.services.messaging.models import Message, StatusChange
from voxplane.services.persistence.base import utcnow
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.migrate import upgrade

DELIVERS = "+15005550001"
SENDER = "+14155550177"
TRICKY = [
    "]" * 153, "a" * 152 + "€" + "a" * 152, "Hello\r\nWorld, see you at 10", "e\u0301te\u0301 “quoted”",
    "a" * 66 + "\U0001f600" + "a" * 66, "{[~^|\\]} " * 20, "ÄÖÑÜ§¿àèéùìò" * 10, "Ça va? \U0001f642",
]
PLAIN = ["Your verification code is 123456. It expires in ten minutes; do not share it with anyone. " * 2][0][:160]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def bench_segments(seconds: float = 2.0) -> bool:
    bodies = TRICKY + [PLAIN] * len(TRICKY)  # half tricky, half plain 160-character bodies
    counted, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for body in bodies:
            segments.count(body)
        counted += len(bodies)
    rate = counted / (time.perf_counter() - started)
    print(f"segments: {rate:,.0f} bodies/s (half tricky, half plain 160-character) -> {verdict(rate >= 100_000)}"
          " (target >= 100,000/s)")
    return rate >= 100_000


class Deployment:
    """A migrated SQLite file, a workspace with a member key and a number, and `voxplane serve all`."""

    def __init__(self, workdir: Path):
        self.url = f"sqlite:///{workdir / 'voxplane.db'}"
        upgrade(self.url)
        self.db = Database(self.url, threads=2)
        self.key = self.db.transaction(
            lambda s: workspaces.create_key(s, workspaces.create_workspace(s, "bench-messaging"), Role.MEMBER),
            write=True,
        )
        env = {**os.environ, "VOXPLANE_DATA_DIR": str(workdir), "VOXPLANE_LOG_LEVEL": "WARNING"}
        env.pop("VOXPLANE_DATABASE_URL", None)
        self.server = ServerProcess("voxplane", [*voxplane_command(), "serve", "all"], env, workdir / "server.log")
        deadline = time.monotonic() + 30
        while True:
            try:
                with Numbers(endpoint=self.server.address, api_key=self.key) as numbers:
                    numbers.create_number(provider_ref="bench", e164_number=SENDER)
                break
            except Exception:  # noqa: BLE001 - not serving yet
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start:\n" + self.server.log_tail()) from None
                time.sleep(0.2)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.server.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def close(self) -> None:
        self.server.stop()
        self.db.close()


async def send_all(address: str, key: str, requests: list[messaging_pb2.SendMessageRequest], in_flight: int) -> float:
    """Sends every request with `in_flight` outstanding; returns the seconds until the last answer."""
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = messaging_pb2_grpc.MessagingStub(channel)
        queue = list(reversed(requests))
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                await stub.SendMessage(queue.pop(), metadata=metadata, timeout=60)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started


def wait_until_none(db: Database, statuses: tuple[str, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while db.transaction(lambda s: s.scalar(select(func.count()).where(Message.status.in_(statuses))), write=False):
        if time.monotonic() > deadline:
            raise SystemExit(f"messages still {statuses} after {timeout:g} s")
        time.sleep(0.2)


def bench_send(deployment: Deployment, count: int, in_flight: int) -> bool:
    requests = [messaging_pb2.SendMessageRequest(source=SENDER, destination=DELIVERS, body=f"bench {i}")
                for i in range(count)]
    seconds = asyncio.run(send_all(deployment.server.address, deployment.key, requests, in_flight))
    accepted = count / seconds
    wait_until_none(deployment.db, ("QUEUED", "SENDING", "SENT"), timeout=120)

    def span(session):  # type: ignore[no-untyped-def]
        first = session.scalar(select(func.min(Message.create_time)).where(Message.send_time.is_(None)))
        last = session.scalar(select(func.max(StatusChange.time)).where(StatusChange.status == "DELIVERED"))
        delivered = session.scalar(select(func.count()).where(Message.status == "DELIVERED"))
        return first, last, delivered

    first, last, delivered = deployment.db.transaction(span, write=False)
    end_to_end = delivered / max((last - first).total_seconds(), 1e-9)
    print(f"send: {count:,} SendMessage with {in_flight} in flight: {accepted:,.0f} accepted/s -> "
          f"{verdict(accepted >= 1000)} (target >= 1,000/s)")
    print(f"send: {delivered:,} delivered end to end through the simulated carrier: {end_to_end:,.0f}/s -> "
          f"{verdict(end_to_end >= 300)} (target >= 300/s)")
    return accepted >= 1000 and end_to_end >= 300 and delivered == count


def bench_scheduled(deployment: Deployment, count: int, spread: float, rss_growth: float) -> bool:
    # The first is due once all are accepted (each must be 60 s ahead when sent): 65 s, plus the sending
    # itself at a conservative 120 accepted/s.
    lead = 65 + count / 120
    start = utcnow() + timedelta(seconds=lead)

    def at(i: int) -> Timestamp:
        stamp = Timestamp()
        stamp.FromDatetime(start + timedelta(seconds=spread * i / count))
        return stamp

    requests = [messaging_pb2.SendMessageRequest(source="Bench", destination=DELIVERS, body=f"later {i}",
                                                 send_time=at(i)) for i in range(count)]
    seconds = asyncio.run(send_all(deployment.server.address, deployment.key, requests, 200))
    print(f"scheduled: {count:,} accepted in {seconds:.1f} s, due over {spread:g} s from {lead:.0f} s ahead")
    samples: list[float] = []
    while utcnow() < start:
        time.sleep(0.2)
    baseline = deployment.rss_mb()
    deadline = time.monotonic() + spread + 30
    while deployment.db.transaction(
            lambda s: s.scalar(select(func.count()).where(Message.status == "SCHEDULED")), write=False):
        samples.append(deployment.rss_mb())
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    lateness = deployment.db.transaction(lambda s: [
        (changed - due).total_seconds() for due, changed in s.execute(
            select(Message.send_time, StatusChange.time).join(StatusChange, StatusChange.message_id == Message.id)
            .where(Message.send_time.is_not(None), StatusChange.status == "SENDING"))], write=False)
    on_time = len(lateness) == count and max(lateness) < 1.0
    growth = max(samples, default=baseline) - baseline
    flat = growth <= rss_growth
    ordered = sorted(lateness) or [float("nan")]
    print(f"scheduled: {len(lateness):,} of {count:,} sent; lateness p50 {statistics.median(ordered) * 1000:.0f} ms, "
          f"p99 {ordered[int(0.99 * (len(ordered) - 1))] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms -> "
          f"{verdict(on_time)} (target: each within 1 s)")
    print(f"scheduled: server RSS {baseline:.0f} MB when the first was due, at most {baseline + growth:.0f} MB "
          f"while they went out ({growth:+.0f} MB) -> {verdict(flat)} (target: flat, within {rss_growth:g} MB)")
    return on_time and flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("segments", "send", "scheduled", "all"), default="all")
    parser.add_argument("--count", type=int, default=5000, help="SendMessage requests of the send part")
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--scale", type=float, default=1.0, help="of 100,000 scheduled over 600 s")
    parser.add_argument("--rss-growth", type=float, default=50.0, help="MB the server may grow by")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (figures of a shared machine)")
    results = []
    if args.part in ("segments", "all"):
        results.append(bench_segments())
    if args.part in ("send", "scheduled", "all"):
        with tempfile.TemporaryDirectory(prefix="bench-messaging-") as scratch:
            deployment = Deployment(Path(scratch))
            try:
                if args.part in ("send", "all"):
                    results.append(bench_send(deployment, args.count, args.in_flight))
                if args.part in ("scheduled", "all"):
                    results.append(bench_scheduled(deployment, max(1, round(100_000 * args.scale)),
                                                   600 * args.scale, args.rss_growth))
            finally:
                deployment.close()
    print("overall:", verdict(all(results)))
    sys.exit(0)


if __name__ == "__main__":
    main()
