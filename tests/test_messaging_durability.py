"""Messaging's queue across processes: a `kill -9` loses no accepted message and sends none twice, and two
servers on one PostgreSQL database send each of a batch of scheduled messages exactly once, on time.
Real `voxplane serve all` subprocesses, on a database of the test's own."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from voxplane import AsyncMessaging, Messaging
from voxplane.messaging.v1 import messaging_pb2 as pb
from voxplane.services.messaging import sending
from voxplane.services.messaging.models import CarrierHandoff, Message, StatusChange
from voxplane.services.persistence.base import utcnow
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.tenancy import ApiKey

from .conftest import backends
from .test_runner_crash import Serving, own_database

DELIVERS = "+15005550001"


def _url(env: dict[str, str], tmp_path) -> str:  # type: ignore[no-untyped-def]
    return env.get("VOXPLANE_DATABASE_URL") or f"sqlite:///{tmp_path / 'voxplane.db'}"


def _carried(db: Database, refs: list[str]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Per message: how many times it was handed to the carrier (its record: the first offer sent it, a
    repeat is answered without sending), and its status history."""
    def read(session):  # type: ignore[no-untyped-def]
        offers = dict(session.execute(
            select(CarrierHandoff.message_ref, CarrierHandoff.offers).where(CarrierHandoff.message_ref.in_(refs))).all())
        histories: dict[str, list[str]] = {}
        for ref, status in session.execute(
                select(Message.ref, StatusChange.status).join(StatusChange, StatusChange.message_id == Message.id)
                .where(Message.ref.in_(refs)).order_by(StatusChange.id)):
            histories.setdefault(ref, []).append(status)
        return offers, histories
    return db.transaction(read, write=False)


async def _send_many(address: str, key: str, count: int) -> list[str]:
    async with AsyncMessaging(endpoint=address, api_key=key) as messaging:
        sent = await asyncio.gather(*(
            messaging.send_message(source="Crash", destination=DELIVERS, body=f"m{i}") for i in range(count)
        ))
    return [m.ref for m in sent]


@pytest.mark.parametrize("backend", backends())
def test_a_killed_process_loses_no_message_and_sends_none_twice(backend, tmp_path):
    with own_database(backend, tmp_path) as (env, key):
        # A lease long enough for a busy machine, short enough for the test: the restart takes the claims back.
        env.update(VOXPLANE_MESSAGING_LEASE="5", VOXPLANE_SIM_RECEIPT_DELAY="0.2")
        first = Serving(env)
        try:
            refs = asyncio.run(_send_many(first.address, key, 300))
        finally:
            first.kill()  # mid-flight: some QUEUED, some SENDING, some SENT waiting for their receipt
        db = Database(_url(env, tmp_path), threads=1)
        at_kill = db.transaction(lambda s: dict(s.execute(
            select(Message.ref, Message.status).where(Message.ref.in_(refs))).all()), write=False)
        second = Serving(env)
        try:
            with Messaging(endpoint=second.address, api_key=key) as messaging:
                deadline = time.monotonic() + 30
                pending = set(refs)
                while pending:
                    assert time.monotonic() < deadline, f"{len(pending)} messages never sent"
                    pending = {ref for ref in pending if messaging.get_message(ref).status not in
                               (pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED)}
                    time.sleep(0.1)
        finally:
            second.stop()
        offers, histories = _carried(db, refs)
        db.close()
    assert len(refs) == 300 and set(offers) == set(refs), "every accepted message reached the carrier"
    # Only a message the killed process had claimed is handed off again (and the carrier sends it no
    # second time); every one of the others is handed off once, by the new process.
    assert all(offers[ref] == 1 for ref, status in at_kill.items() if status != "SENDING")
    assert {tuple(h[:3]) for h in histories.values()} == {("QUEUED", "SENDING", "SENT")}
    assert all(len(h) == len(set(h)) for h in histories.values()), "no status twice: one claim, one answer each"
    waiting = sum(status == "QUEUED" for status in at_kill.values())
    claimed = sum(status == "SENDING" for status in at_kill.values())
    print(f"at the kill: {waiting} of 300 QUEUED, {claimed} SENDING; "
          f"{sum(offers.values()) - len(refs)} handed off again after the restart")


@pytest.mark.skipif("postgresql" not in backends(), reason="needs a PostgreSQL server")
def test_two_servers_on_one_postgresql_send_each_scheduled_message_once_and_on_time(tmp_path):
    with own_database("postgresql", tmp_path) as (env, key):
        db = Database(env["VOXPLANE_DATABASE_URL"], threads=2)
        workspace_id = db.transaction(lambda s: s.scalar(select(ApiKey.workspace_id)), write=False)
        servers = [Serving(env), Serving(env)]
        try:
            due = utcnow() + timedelta(seconds=3)
            # Stored as SendMessage stores them, but due sooner than SendMessage allows (60 s), to keep it short.
            batch = [sending.Accepted(workspace_id, sending.NewMessage(
                "Twins", False, DELIVERS, f"m{i}", due + timedelta(milliseconds=5 * i), None, None))
                for i in range(400)]
            stored = db.transaction(lambda s: sending.insert_messages(s, batch), write=True)
            refs = [m.ref for m in stored if isinstance(m, sending.Stored)]
            deadline = time.monotonic() + 30
            while db.transaction(lambda s: s.scalar(select(func.count()).where(
                    Message.ref.in_(refs), Message.status.in_(("SCHEDULED", "SENDING")))), write=False):
                assert time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            for server in servers:
                server.stop()
        offers, histories = _carried(db, refs)
        lateness = db.transaction(lambda s: [
            (change - send).total_seconds() for send, change in s.execute(
                select(Message.send_time, StatusChange.time).join(StatusChange, StatusChange.message_id == Message.id)
                .where(Message.ref.in_(refs), StatusChange.status == "SENDING"))], write=False)
        db.close()
    assert set(offers) == set(refs) and set(offers.values()) == {1}, "each handed off once, by one of the two"
    assert {tuple(h[:3]) for h in histories.values()} == {("SCHEDULED", "SENDING", "SENT")}
    assert all(len(h) == len(set(h)) for h in histories.values())
    assert max(lateness) < 1.0, f"the latest went out {max(lateness):.3f} s after its time"
    print(f"400 scheduled messages, two servers: each sent once; at most {max(lateness):.3f} s after its time")
