"""Call events: every change of a call is an event in the outbox, in its transaction, and
WatchCallEvents streams them from a cursor that is safe to resume from, one call's or a workspace's."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from google.protobuf import json_format
from pydantic import ValidationError
from sqlalchemy import select, text

from voxplane import Calls, InvalidArgumentError, NotFoundError, OutOfRangeError
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls import gateway, live, states
from voxplane.services.calls.states import NetworkEvent
from voxplane.services.core import config
from voxplane.services.core.auth import Caller, Role
from voxplane.services.events import feed, outbox, retention
from voxplane.services.events.models import Event
from voxplane.services.persistence.base import utcnow
from voxplane.services.persistence.tenancy import Workspace

from . import test_calls
from .conftest import ServerThread
from .test_calls import wait_for
from .test_grpcurl import GRPCURL

S, H, T = pb.CallStatus, pb.HangupCause, pb.CallEventType
E = states.Event
agent, calls = test_calls.agent, test_calls.calls  # its fixtures: an agent of the tenant, the tenant's Calls


def events_of(stream, until: int | None = None, count: int | None = None, within: float = 30.0
              ) -> list[pb.CallEvent]:  # type: ignore[no-untyped-def]
    """The events of `stream` (heartbeats skipped) up to the first of type `until`, or `count` of them."""
    found: list[pb.CallEvent] = []
    deadline = time.monotonic() + within
    for response in stream:
        assert time.monotonic() < deadline, f"only {[T.Name(e.type) for e in found]} within {within}s"
        if response.HasField("event"):
            found.append(response.event)
            if response.event.type == until or len(found) == count:
                return found
    raise AssertionError("the stream ended")


def types(events: list[pb.CallEvent]) -> list[str]:
    return [T.Name(e.type).removeprefix("CALL_EVENT_TYPE_") for e in events]


def report(server, network, event: NetworkEvent) -> None:  # type: ignore[no-untyped-def]
    """What the simulated network reports, as its gateway does."""
    server.run(network.gateway.report(event))


# --- every change is an event ------------------------------------------------------------------------------


def test_every_control_and_network_change_is_an_event_numbered_in_order(calls, agent, server, network):
    created = utcnow()
    call, stream = calls.create_call(source=agent.ref, destination=gateway.ANSWERS, track=True, timeout=5)
    with stream:
        assert types(events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)) == ["NEW_CALL", "RINGING", "ANSWER"]
        calls.mute_call(call.ref, mute=True)
        calls.mute_call(call.ref, mute=True)  # already muted: nothing changed, no event
        calls.mute_call(call.ref, mute=False)
        calls.hold_call(call.ref, hold=True)
        calls.hold_call(call.ref, hold=False)
        calls.record_call(call.ref, start=True)
        calls.record_call(call.ref, start=False)
        calls.play_audio(call.ref, url="https://media.example.com/hello.wav")
        report(server, network, NetworkEvent(call.ref, None, dtmf="12#"))
        calls.send_dtmf(call.ref, digits="9")  # sent into the call: not the caller pressing keys
        calls.redirect_call(call.ref, webhook="https://hooks.example.com/next")
        calls.transfer_call(call.ref, destination="+14155550111", attended=True)
        ended = calls.hangup_call(call.ref)
        later = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
    assert types(later) == [
        "MUTED", "UNMUTED", "HELD", "RESUMED", "RECORDING_STARTED", "RECORDING_STOPPED", "PLAYING", "DATA",
        "REDIRECTED", "TRANSFERRED", "HANGUP",
    ]
    assert [e.sequence for e in later] == list(range(4, 15))
    muted, _, held, _, recording, _, playing, data, redirected, transferred, hangup = later
    assert muted.muted and held.on_hold and recording.recording and not hangup.muted
    assert playing.audio_url == "https://media.example.com/hello.wav" and data.digits == "12#"
    assert redirected.webhook == "https://hooks.example.com/next" and not playing.webhook
    assert transferred.transfer_destination == "+14155550111"
    assert hangup.status == S.CALL_STATUS_COMPLETED and hangup.hangup_cause == H.HANGUP_CAUSE_NORMAL_CLEARING
    assert {e.status for e in later[:-1]} == {S.CALL_STATUS_IN_PROGRESS}
    assert {e.hangup_cause for e in later[:-1]} == {H.HANGUP_CAUSE_UNSPECIFIED}
    assert {(e.call_ref, e.source, e.destination, e.direction) for e in later} == {
        (call.ref, agent.ref, gateway.ANSWERS, pb.DIRECTION_OUTBOUND)}
    assert len({e.event_id for e in later}) == len(later)
    times = [e.network_time.ToDatetime(tzinfo=created.tzinfo) for e in later]
    assert times == sorted(times) and created <= times[0] <= times[-1] <= ended.update_time.ToDatetime(created.tzinfo)


def test_a_blind_transfer_is_transferred_then_a_forwarded_hangup(calls, agent):
    call, stream = calls.create_call(source=agent.ref, destination=gateway.ANSWERS, track=True)
    with stream:
        events_of(stream, until=T.CALL_EVENT_TYPE_ANSWER)
        calls.transfer_call(call.ref, destination="+14155550112")
        transferred, hangup = events_of(stream, count=2)
    assert types([transferred, hangup]) == ["TRANSFERRED", "HANGUP"]
    assert transferred.status == S.CALL_STATUS_IN_PROGRESS and transferred.sequence == 4
    assert hangup.status == S.CALL_STATUS_COMPLETED and hangup.hangup_cause == H.HANGUP_CAUSE_FORWARDED


@pytest.mark.parametrize(("destination", "expected", "status", "cause"), [
    (gateway.BUSY, ["NEW_CALL", "RINGING", "HANGUP"], S.CALL_STATUS_BUSY, H.HANGUP_CAUSE_BUSY),
    (gateway.FAILS, ["NEW_CALL", "HANGUP"], S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_CONGESTION),
])
def test_a_call_the_network_ends_ends_with_its_cause(calls, agent, destination, expected, status, cause):
    _, stream = calls.create_call(source=agent.ref, destination=destination, track=True)
    with stream:
        found = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
    assert types(found) == expected and [e.sequence for e in found] == list(range(1, len(expected) + 1))
    assert (found[-1].status, found[-1].hangup_cause) == (status, cause)


def test_a_cancelled_call_is_new_then_cancelled(calls, agent):
    call, stream = calls.create_call(source=agent.ref, destination=gateway.STAYS_QUEUED, track=True)
    with stream:
        assert types(events_of(stream, count=1)) == ["NEW_CALL"]
        calls.cancel_call(call.ref)
        (hangup,) = events_of(stream, count=1)
    assert (hangup.type, hangup.status, hangup.hangup_cause) == (
        T.CALL_EVENT_TYPE_HANGUP, S.CALL_STATUS_CANCELED, H.HANGUP_CAUSE_CANCEL)


def test_the_calls_of_a_stopped_runner_end_with_a_service_restart_event(calls, agent, db):
    call, stream = calls.create_call(source=agent.ref, destination=gateway.STAYS_QUEUED, track=True)
    with stream:
        events_of(stream, count=1)
        # Its runner taken for stopped: the server's next heartbeat ends the call.
        db.transaction(lambda s: s.execute(text("UPDATE calls SET runner_id = 'gone' WHERE ref = :ref"),
                                           {"ref": call.ref}), write=True)
        (hangup,) = events_of(stream, count=1, within=30)
    assert (hangup.type, hangup.status, hangup.hangup_cause, hangup.sequence) == (
        T.CALL_EVENT_TYPE_HANGUP, S.CALL_STATUS_FAILED, H.HANGUP_CAUSE_SERVICE_RESTART, 2)


def test_a_stored_event_is_its_row_and_its_payload_the_rest_in_proto_json(calls, agent, db):
    call, stream = calls.create_call(source=agent.ref, destination=gateway.ANSWERS, track=True,
                                     webhook="https://hooks.example.com/calls")
    with stream:
        calls.hangup_call(wait_for(calls, call.ref, S.CALL_STATUS_IN_PROGRESS).ref)
        streamed = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
    rows = db.transaction(lambda s: list(s.scalars(
        select(Event).where(Event.resource_ref == call.ref).order_by(Event.sequence))), write=False)
    assert [(r.ref, r.sequence, r.type, r.topic) for r in rows] == [
        (e.event_id, e.sequence, T.Name(e.type).removeprefix("CALL_EVENT_TYPE_"), "call") for e in streamed]
    for row, event in zip(rows, streamed, strict=True):
        assert (row.webhook, row.direction) == ("https://hooks.example.com/calls", "OUTBOUND")
        rest = pb.CallEvent()
        rest.CopyFrom(event)
        for column in ("event_id", "call_ref", "sequence", "type", "network_time"):
            rest.ClearField(column)
        assert row.payload == json_format.MessageToDict(rest)


# --- the stream --------------------------------------------------------------------------------------------


def test_resuming_from_the_last_cursor_misses_nothing_and_repeats_nothing(tenant, agent):
    """Many calls at once, from several threads; the watcher drops the stream every few events and
    reconnects with the last cursor it saw."""
    with tenant.calls() as calls:
        opened = calls.watch_call_events(heartbeat_interval=1)
        start = next(opened).cursor  # from now: the first message is a heartbeat, with the current cursor
        opened.cancel()

        def make(i: int) -> str:
            return calls.create_call(source=agent.ref, destination=gateway.FAR_END_HANGS_UP + "1").ref

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            refs = set(pool.map(make, range(24)))
        seen: list[pb.CallEvent] = []
        cursor = start
        deadline = time.monotonic() + 60
        while sum(e.type == T.CALL_EVENT_TYPE_HANGUP for e in seen) < len(refs):
            assert time.monotonic() < deadline, f"{len(seen)} events seen"
            with calls.watch_call_events(cursor=cursor, heartbeat_interval=1) as stream:
                for taken, response in enumerate(stream):
                    cursor = response.cursor
                    if response.HasField("event"):
                        seen.append(response.event)
                    if taken == 4:
                        break
    assert len({e.event_id for e in seen}) == len(seen), "an event came twice"
    assert {e.call_ref for e in seen} == refs
    for ref in refs:
        mine = [e for e in seen if e.call_ref == ref]
        assert types(mine) == ["NEW_CALL", "RINGING", "ANSWER", "HANGUP"], ref
        assert [e.sequence for e in mine] == [1, 2, 3, 4]


def test_an_event_committed_after_a_later_one_is_still_streamed_once(tenant, agent, db, database_url):
    """PostgreSQL assigns ids at insert: a transaction holding id 7 may commit after the one with id 8.
    A reader that saw 8 and resumed after it would skip 7; ours holds 8 back until 7 is final."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite writers take turns: ids are assigned in commit order")
    workspace = db.transaction(lambda s: s.scalars(select(Workspace).where(Workspace.ref == tenant.ref)).one(),
                               write=False)
    caller = Caller(key_id="test", role=Role.MEMBER, workspace_id=workspace.id, workspace_ref=workspace.ref)
    new = live.checked_new_call(source=agent.ref, destination=gateway.STAYS_QUEUED, caller_id="", device_id="",
                                webhook="", timeout=None, metadata={}, request_id="")
    with tenant.calls() as calls:
        with calls.watch_call_events(heartbeat_interval=1) as stream:
            cursor = next(stream).cursor
        with db.writer.connect() as connection:  # the slow transaction: it inserts first, commits last
            from sqlalchemy.orm import Session

            slow = Session(connection)
            early = live.insert_call(slow, caller, new, "", "no-runner")
            late = calls.create_call(source=agent.ref, destination=gateway.STAYS_QUEUED)
            with calls.watch_call_events(cursor=cursor, heartbeat_interval=1) as stream:
                held = next(stream)
            assert held.HasField("heartbeat"), "an event was streamed while an earlier one could still commit"
            slow.commit()
        with calls.watch_call_events(cursor=held.cursor, heartbeat_interval=1) as stream:
            found = events_of(stream, count=2)
        calls.cancel_call(late.ref)
    assert [(e.call_ref, e.type) for e in found] == [
        (early.ref, T.CALL_EVENT_TYPE_NEW_CALL), (late.ref, T.CALL_EVENT_TYPE_NEW_CALL)]


def test_one_calls_stream_starts_at_its_first_event_and_shows_no_other_call(calls, agent):
    first = calls.create_call(source=agent.ref, destination=gateway.BUSY)
    wait_for(calls, first.ref, S.CALL_STATUS_BUSY)
    calls.create_call(source=agent.ref, destination=gateway.BUSY)  # another call meanwhile
    with calls.watch_call_events(first.ref) as stream:
        found = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
    assert types(found) == ["NEW_CALL", "RINGING", "HANGUP"] and {e.call_ref for e in found} == {first.ref}


def test_heartbeats_carry_the_cursor_to_resume_from(calls, agent):
    with calls.watch_call_events(heartbeat_interval=1) as stream:
        started = time.monotonic()
        beats = [next(stream), next(stream)]
    assert all(b.HasField("heartbeat") and b.cursor for b in beats)
    assert time.monotonic() - started >= 1.0  # a heartbeat is sent once an interval passed with no event
    call = calls.create_call(source=agent.ref, destination=gateway.BUSY)
    with calls.watch_call_events(cursor=beats[-1].cursor) as stream:
        (first,) = events_of(stream, count=1)
    assert (first.call_ref, first.type) == (call.ref, T.CALL_EVENT_TYPE_NEW_CALL)


@pytest.mark.parametrize("seconds", [0.5, 61, -1])
def test_a_heartbeat_interval_out_of_range_is_invalid(calls, seconds):
    with pytest.raises(InvalidArgumentError) as raised:
        next(iter(calls.watch_call_events(heartbeat_interval=seconds)))
    assert {v.field for v in raised.value.field_violations} == {"heartbeat_interval"}


@pytest.mark.parametrize("cursor", ["nonsense", "A" * 60, "x.y"])
def test_a_cursor_the_server_did_not_issue_is_invalid(calls, cursor):
    with pytest.raises(InvalidArgumentError) as raised:
        next(iter(calls.watch_call_events(cursor=cursor)))
    assert {v.field for v in raised.value.field_violations} == {"cursor"}
    assert "without one" in raised.value.message


def test_streams_show_only_the_callers_workspace(tenant, other_tenant, agent):
    with tenant.calls() as calls, other_tenant.calls() as others:
        with others.watch_call_events(heartbeat_interval=1) as theirs:
            call, stream = calls.create_call(source=agent.ref, destination=gateway.BUSY, track=True)
            with stream:
                mine = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
            with calls.watch_call_events(cursor=stream_cursor(calls, call.ref)) as resumed:
                cursor = next(resumed).cursor
            seen_by_them = [next(theirs) for _ in range(2)]
        assert all(r.HasField("heartbeat") for r in seen_by_them), "another workspace's event was streamed"
        assert len(mine) == 3
        with pytest.raises(NotFoundError):
            next(iter(others.watch_call_events(call.ref)))
        with pytest.raises(InvalidArgumentError):  # a cursor is good for its workspace's streams only
            next(iter(others.watch_call_events(cursor=cursor)))


def stream_cursor(calls, ref: str) -> str:  # type: ignore[no-untyped-def]
    """The cursor after the first event of call `ref`."""
    with calls.watch_call_events(ref) as stream:
        return next(stream).cursor  # type: ignore[no-any-return]


def test_a_cursor_older_than_the_events_kept_is_out_of_range(calls, agent, db):
    call = calls.create_call(source=agent.ref, destination=gateway.BUSY)
    wait_for(calls, call.ref, S.CALL_STATUS_BUSY)
    eight_days_ago = utcnow() - timedelta(days=8)
    db.transaction(lambda s: s.execute(text("UPDATE events SET create_time = :t WHERE resource_ref = :ref"),
                                       {"t": eight_days_ago, "ref": call.ref}), write=True)
    old = stream_cursor(calls, call.ref)  # not pruned yet: the call's stream still starts at it
    with pytest.raises(OutOfRangeError) as raised:
        next(iter(calls.watch_call_events(call.ref, cursor=old)))
    assert "without a cursor" in raised.value.message and "7 days" in raised.value.message


def test_pruning_deletes_the_events_older_than_kept_and_keeps_the_others(calls, agent, db):
    old, recent = (calls.create_call(source=agent.ref, destination=gateway.BUSY).ref for _ in range(2))
    wait_for(calls, recent, S.CALL_STATUS_BUSY)
    wait_for(calls, old, S.CALL_STATUS_BUSY)
    db.transaction(lambda s: s.execute(text("UPDATE events SET create_time = :t WHERE resource_ref = :ref"),
                                       {"t": utcnow() - timedelta(days=7, hours=2), "ref": old}), write=True)
    db.transaction(lambda s: retention.prune(s, timedelta(days=7)), write=True)
    left = db.transaction(lambda s: outbox.latest_sequence(s, "call", [old, recent]), write=False)
    assert left == {recent: 3}


def test_events_cannot_be_kept_shorter_than_webhooks_are_retried(environment):
    with pytest.raises(ValidationError, match="event_retention_days"):
        config.Settings(event_retention_days=2)
    assert config.Settings(event_retention_days=30).event_retention == timedelta(days=30)


def test_the_async_client_streams_with_async_for(tenant, agent):
    async def watch() -> list[str]:
        async with tenant.async_calls() as calls:
            call, stream = await calls.create_call(source=agent.ref, destination=gateway.BUSY, track=True)
            found: list[str] = []
            async with stream:
                async for response in stream:
                    if response.HasField("event"):
                        found.append(T.Name(response.event.type))
                        if response.event.type == T.CALL_EVENT_TYPE_HANGUP:
                            break
            with pytest.raises(NotFoundError):
                async for _ in calls.watch_call_events("no-such-call"):
                    pass
            return found

    assert asyncio.run(asyncio.wait_for(watch(), 20)) == [
        "CALL_EVENT_TYPE_NEW_CALL", "CALL_EVENT_TYPE_RINGING", "CALL_EVENT_TYPE_HANGUP"]


def test_grpcurl_watches_a_calls_events(server, tenant, calls, agent):
    call = calls.create_call(source=agent.ref, destination=gateway.BUSY)
    wait_for(calls, call.ref, S.CALL_STATUS_BUSY)
    assert GRPCURL
    watched = subprocess.run([
        GRPCURL, "-plaintext", "-max-time", "3", "-H", f"authorization: Bearer {tenant.keys[Role.MEMBER]}",
        "-d", json.dumps({"call_ref": call.ref}), server.address, "voxplane.calls.v1.Calls/WatchCallEvents",
    ], capture_output=True, text=True, timeout=30)
    assert "DeadlineExceeded" in watched.stderr  # it streams until stopped: here by -max-time
    assert [line.strip() for line in watched.stdout.splitlines() if '"type"' in line] == [
        '"type": "CALL_EVENT_TYPE_NEW_CALL",', '"type": "CALL_EVENT_TYPE_RINGING",', '"type": "CALL_EVENT_TYPE_HANGUP",']


# --- never losing a report ---------------------------------------------------------------------------------


@contextlib.contextmanager
def calls_locked(db, database_url: str) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The calls table locked against writers by another connection, as a stuck transaction would."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with db.writer.connect() as connection:
        connection.execute(text("LOCK TABLE calls IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()


def test_a_report_the_database_fails_is_retried_until_stored(calls, agent, server, network, db, database_url,
                                                              caplog):
    call = wait_for(calls, calls.create_call(source=agent.ref, destination=gateway.ANSWERS).ref,
                    S.CALL_STATUS_IN_PROGRESS)
    caplog.set_level(logging.WARNING, "voxplane.calls.recorder")
    with calls_locked(db, database_url):
        stored = asyncio.run_coroutine_threadsafe(
            network.gateway.report(NetworkEvent(call.ref, E.END, states.NORMAL_CLEARING)), server.loop)
        time.sleep(config.settings().db_timeout * 1.5)  # the lock outlasts a try
        assert not stored.done(), "the report returned while its call could not be written"
    stored.result(timeout=20)
    assert any("trying again" in r.getMessage() for r in caplog.records)
    with calls.watch_call_events(call.ref) as stream:
        found = events_of(stream, until=T.CALL_EVENT_TYPE_HANGUP)
    assert types(found)[-1] == "HANGUP" and calls.get_call(call.ref).status == S.CALL_STATUS_COMPLETED


def test_a_watcher_too_slow_for_the_poller_reads_on_its_own_and_still_gets_each_event_once(
        tenant, db, monkeypatch):
    """The poller queues at most MAX_QUEUED rows for a watcher; one that does not read meanwhile is
    dropped back to reading the outbox on its own, from where its queue ended."""
    monkeypatch.setattr(feed, "MAX_QUEUED", 3)
    workspace_id = db.transaction(
        lambda s: s.scalars(select(Workspace.id).where(Workspace.ref == tenant.ref)).one(), write=False)

    def store(count: int) -> list[str]:
        made = [outbox.NewEvent(workspace_id, "call", f"slow-{secrets.token_hex(6)}", 1, "NEW_CALL", utcnow(),
                                "OUTBOUND", None, {}) for _ in range(count)]
        return db.transaction(lambda s: outbox.append(s, made), write=True)

    async def watch() -> tuple[list[str], list[str]]:
        events = feed.EventFeed(db, "call")
        start = db.transaction(lambda s: outbox.read(s, outbox.START, limit=0, topic="call")[1], write=False)
        stream = events.watch(workspace_id, start, utcnow(), lambda row: row.ref, lambda *_: None, idle=0.2)
        assert await anext(stream) is None  # a heartbeat: it has joined the poller
        stored = []
        for _ in range(4):  # more than a queue takes, each while the watcher is not reading
            stored += await asyncio.to_thread(store, 5)
            events.wake()
            await asyncio.sleep(0.2)
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < len(stored):
            assert time.monotonic() < deadline, f"{len(seen)} of {len(stored)} events came"
            item = await asyncio.wait_for(anext(stream), 5)
            if item is not None:
                seen.append(item)
        await stream.aclose()
        await events.close()
        return stored, seen

    stored, seen = asyncio.run(watch())
    assert seen == stored


def test_a_stream_is_woken_by_another_replicas_events_through_postgresql(tenant, agent, database_url, monkeypatch):
    """PostgreSQL's LISTEN/NOTIFY wakes one replica's streams with another's events (migration 0015's
    trigger): with every poll a minute apart, the events can only arrive within 20 s by a notification."""
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite one process is the deployment, and it wakes its own streams")
    monkeypatch.setattr(feed, "POLL_INTERVAL", 60.0)
    monkeypatch.setattr(outbox, "SAFETY_POLL", 60.0)
    other = ServerThread(database_url, ["all"])
    try:
        with tenant.calls() as here, Calls(endpoint=other.address, api_key=tenant.keys[Role.MEMBER]) as there:
            with here.watch_call_events(heartbeat_interval=1) as stream:
                beats = iter(stream)
                next(beats), next(beats)  # the second heartbeat: the stream is live, waiting on the poller
                made = there.create_call(source=agent.ref, destination=gateway.FAR_END_HANGS_UP + "0")
                seen = events_of(beats, until=T.CALL_EVENT_TYPE_HANGUP, within=20)
        assert {e.call_ref for e in seen} == {made.ref}
        assert types(seen) == ["NEW_CALL", "RINGING", "ANSWER", "HANGUP"]
    finally:
        other.stop()
