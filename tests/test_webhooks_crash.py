"""Webhook deliveries survive `kill -9`: a real `voxplane serve all` process killed outright with
deliveries pending delivers every one of them once it runs again. And two servers on one database
never send one delivery at the same time."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voxplane import Webhooks
from voxplane.services.events import outbox
from voxplane.services.persistence.base import new_ref, utcnow
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.tenancy import Workspace
from voxplane.services.webhooks.models import Delivery
from voxplane.webhooks import verify

from .conftest import backends
from .test_runner_crash import Serving, own_database
from .webhook_receiver import Receiver

EVENTS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def store_events(db: Database, url: str, calls: int, per_call: int) -> list[str]:
    def write(session):  # type: ignore[no-untyped-def]
        workspace = session.scalar(select(Workspace.id).where(Workspace.name == "crash"))
        return outbox.append(session, [
            outbox.NewEvent(workspace, "call", ref, n, "ANSWER", utcnow(), "OUTBOUND", url, {"source": "+14155550100"})
            for ref in (new_ref() for _ in range(calls)) for n in range(1, per_call + 1)
        ])

    return db.transaction(write, write=True)


def database_of(env: dict[str, str], tmp_path: Path) -> Database:
    return Database(env.get("VOXPLANE_DATABASE_URL") or f"sqlite:///{tmp_path / 'voxplane.db'}", threads=1)


def fast(env: dict[str, str]) -> dict[str, str]:
    return dict(env, VOXPLANE_WEBHOOK_ALLOW="127.0.0.0/8", VOXPLANE_WEBHOOK_RETRY_SCHEDULE="[0.3, 0.3, 0.3, 0.3, 0.3, 60]")


@pytest.mark.parametrize("backend", backends())
def test_deliveries_pending_when_the_process_is_killed_are_delivered_after_restart(backend, tmp_path):
    port = free_port()  # where the receiver will listen, once it is up
    with own_database(backend, tmp_path) as (env, key):
        env = fast(env)
        db = database_of(env, tmp_path)
        first = Serving(env)
        try:
            with Webhooks(endpoint=first.address, api_key=key) as webhooks:
                secret = webhooks.create_signing_secret().secret
            events = store_events(db, f"http://127.0.0.1:{port}/hook", calls=EVENTS // 3, per_call=3)
            deadline = time.monotonic() + 20
            while not db.transaction(lambda s: s.scalar(select(func.count()).where(Delivery.attempts > 0)), write=False):
                assert time.monotonic() < deadline, "no delivery was attempted"
                time.sleep(0.05)
        finally:
            first.kill()  # mid-retry: the receiver was down all along
        pending = db.transaction(lambda s: s.scalar(select(func.count()).select_from(Delivery)), write=False)
        assert pending == EVENTS

        receiver = Receiver(port=port)
        second = Serving(env)
        try:
            got = receiver.wait_for(EVENTS, timeout=30)
        finally:
            second.stop()
            receiver.close()
            db.close()
    assert {r.event_id for r in got} == set(events)
    for request in got:
        verify(request.headers, request.body, secret)


@pytest.mark.skipif("postgresql" not in backends(), reason="replicas share a PostgreSQL database")
def test_two_servers_on_one_database_send_each_delivery_once(tmp_path):
    receiver = Receiver()
    with own_database("postgresql", tmp_path) as (env, key):
        env = fast(env)
        db = database_of(env, tmp_path)
        servers = [Serving(env), Serving(env)]
        try:
            with Webhooks(endpoint=servers[0].address, api_key=key) as webhooks:
                webhooks.create_signing_secret()
            events = store_events(db, receiver.url(), calls=100, per_call=5)
            receiver.wait_for(len(events), timeout=60)
            time.sleep(0.5)  # room for a duplicate to arrive, were one sent
        finally:
            for server in servers:
                server.stop()
            receiver.close()
            db.close()
    assert sorted(r.event_id for r in receiver.requests) == sorted(events)
