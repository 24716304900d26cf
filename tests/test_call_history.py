"""The call history over a real channel: ListCalls filters and pages, marks, deletion, the CSV export.

Calls are inserted straight into the database, as the live part of the service would leave them, so
these tests hold whatever state the gateway is in.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import secrets
import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select

from voxplane import (
    AbortedError,
    AsyncCalls,
    Calls,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from voxplane.calls.v1 import calls_pb2 as pb
from voxplane.services.calls.models import Call, CallLabel
from voxplane.services.core.auth import Role
from voxplane.services.persistence.tenancy import Workspace

from .test_grpcurl import grpcurl

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
HEADER = [
    "ref", "direction", "status", "hangup_cause", "source", "destination", "caller_id", "create_time", "answer_time",
    "end_time", "duration_seconds", "starred", "archived", "read", "note", "labels",
]


def calls_client(tenant, role: Role = Role.MEMBER) -> Calls:  # type: ignore[no-untyped-def]
    return tenant.calls(role)


def workspace_id(db, tenant) -> int:  # type: ignore[no-untyped-def]
    return db.transaction(lambda s: s.scalar(select(Workspace.id).where(Workspace.ref == tenant.ref)), write=False)


def insert_calls(db, tenant, *specs: dict) -> list[str]:  # type: ignore[no-untyped-def]
    """Inserts one ended call per spec (fields of Call, plus `labels`), oldest first; returns their refs."""
    ws = workspace_id(db, tenant)

    def add(session):  # type: ignore[no-untyped-def]
        made = []
        for i, spec in enumerate(specs):
            spec = dict(spec)
            labels = spec.pop("labels", [])
            created = spec.pop("create_time", T0 + timedelta(minutes=i))
            call = Call(
                workspace_id=ws,
                from_party=spec.pop("from_party", "+14155550100"),
                to_party=spec.pop("to_party", "+14155550199"),
                direction=spec.pop("direction", "OUTBOUND"),
                status=spec.pop("status", "COMPLETED"),
                hangup_cause=spec.pop("hangup_cause", "NORMAL_CLEARING"),
                create_time=created,
                update_time=created,
                **spec,
            )
            call.labels = [CallLabel(label=label) for label in sorted(labels)]
            session.add(call)
            made.append(call)
        session.flush()
        return [call.ref for call in made]

    return db.transaction(add, write=True)


def listed(client, page_size: int = 1000, **call_filter) -> list[str]:  # type: ignore[no-untyped-def]
    """Every ref ListCalls returns for the filter, walking all pages."""
    refs, token = [], ""
    while True:
        page = client.list_calls(filter=call_filter, page_size=page_size, page_token=token)
        refs += [call.ref for call in page.calls]
        token = page.next_page_token
        if not token:
            return refs


def violated_fields(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.field_violations}


# --- ListCalls ------------------------------------------------------------------------------


def test_list_is_newest_first_a_page_at_a_time(tenant, db):
    refs = insert_calls(db, tenant, *({} for _ in range(25)))
    with calls_client(tenant) as calls:
        first = calls.list_calls(page_size=10)
        assert [c.ref for c in first.calls] == refs[::-1][:10]
        assert first.next_page_token
        assert listed(calls, page_size=10) == refs[::-1]
        assert listed(calls, page_size=25) == refs[::-1]
        assert calls.list_calls(page_size=25).next_page_token == ""
        assert len(calls.list_calls().calls) == 20  # the default page size


@pytest.fixture
def history(tenant, db):  # type: ignore[no-untyped-def]
    """A varied history; `history[name]` is the ref of each call."""
    specs = {
        "inbound": {"direction": "INBOUND", "from_party": "+442079460000", "to_party": "+14155550100"},
        "busy": {"status": "BUSY", "hangup_cause": "BUSY"},
        "to_uk": {"to_party": "+442079460000"},
        "starred": {"starred": True},
        "archived": {"archived": True},
        "read": {"read": True},
        "vip": {"labels": ["vip", "sales"]},
        "sip": {"to_party": "sip:alice@example.com", "status": "NO_ANSWER", "hangup_cause": "NO_ANSWER"},
        "late": {"create_time": T0 + timedelta(days=2)},
    }
    refs = insert_calls(db, tenant, *specs.values())
    return dict(zip(specs, refs, strict=True))


@pytest.mark.parametrize(
    ("call_filter", "expected"),
    [
        ({}, ["inbound", "busy", "to_uk", "starred", "archived", "read", "vip", "sip", "late"]),
        ({"direction": "DIRECTION_INBOUND"}, ["inbound"]),
        ({"direction": "DIRECTION_OUTBOUND", "status": "CALL_STATUS_COMPLETED", "starred": False, "read": False,
          "archived": False, "label": ""},
         ["to_uk", "vip", "late"]),
        ({"status": "CALL_STATUS_BUSY"}, ["busy"]),
        ({"status": "CALL_STATUS_NO_ANSWER"}, ["sip"]),
        ({"party": "+44 20 7946 0000"}, ["inbound", "to_uk"]),  # from or to, in any form with a country code
        ({"party": "+1 (415) 555-0100", "direction": "DIRECTION_INBOUND"}, ["inbound"]),
        ({"created_after": "2024-05-02T00:00:00Z"}, ["late"]),
        ({"created_before": (T0 + timedelta(minutes=2)).isoformat()}, ["inbound", "busy"]),
        ({"created_after": (T0 + timedelta(minutes=1)).isoformat(), "created_before": (T0 + timedelta(minutes=3)).isoformat()},
         ["busy", "to_uk"]),
        ({"starred": True}, ["starred"]),
        ({"archived": True}, ["archived"]),
        ({"read": True}, ["read"]),
        ({"label": "vip"}, ["vip"]),
        ({"label": " sales "}, ["vip"]),
        ({"label": "nobody"}, []),
        ({"label": "vip", "starred": True}, []),
    ],
)
def test_every_filter(tenant, history, call_filter, expected):
    with calls_client(tenant) as calls:
        assert listed(calls, **call_filter) == [history[name] for name in reversed(expected)]


def test_combined_filters_page_newest_first(tenant, db):
    specs = [
        {"direction": "INBOUND" if i % 2 else "OUTBOUND", "starred": i % 3 == 0,
         "labels": ["vip"] if i % 5 else [], "to_party": "+14155550123" if i % 7 else "+14155550199"}
        for i in range(120)
    ]
    refs = insert_calls(db, tenant, *specs)
    expected = [
        ref for ref, s in zip(refs, specs, strict=True)
        if s["direction"] == "INBOUND" and s["starred"] and s["labels"] and s["to_party"] == "+14155550123"
    ][::-1]
    assert len(expected) > 6
    with calls_client(tenant) as calls:
        call_filter = {"direction": "DIRECTION_INBOUND", "starred": True, "label": "vip", "party": "+14155550123"}
        assert listed(calls, page_size=3, **call_filter) == expected
        assert listed(calls, page_size=1000, **call_filter) == expected


def test_a_page_token_is_bound_to_its_filter_and_workspace(tenant, other_tenant, db):
    insert_calls(db, tenant, *({"starred": True} for _ in range(3)))
    with calls_client(tenant) as calls, calls_client(other_tenant) as others:
        token = calls.list_calls(filter={"starred": True}, page_size=1).next_page_token
        assert calls.list_calls(filter={"starred": True}, page_size=1, page_token=token).calls
        for request, client in [
            ({"filter": {"starred": False}}, calls),
            ({"filter": {}}, calls),
            ({"filter": {"starred": True, "label": "x"}}, calls),
            ({"filter": {"starred": True}}, others),
            ({"filter": {"starred": True}, "page_token": token[:-2] + "AA"}, calls),
        ]:
            with pytest.raises(InvalidArgumentError) as caught:
                client.list_calls({"page_token": token, **request})
            assert violated_fields(caught.value) == {"page_token"}


def test_a_token_survives_another_spelling_of_the_same_number(tenant, db):
    insert_calls(db, tenant, *({} for _ in range(3)))
    with calls_client(tenant) as calls:
        token = calls.list_calls(filter={"party": "+14155550199"}, page_size=1).next_page_token
        page = calls.list_calls(filter={"party": "+1 415-555-0199"}, page_size=5, page_token=token)
        assert len(page.calls) == 2


@pytest.mark.parametrize(
    ("request_fields", "bad_fields"),
    [
        ({"filter": {"party": "12345"}}, {"filter.party"}),
        ({"filter": {"party": "not a number"}}, {"filter.party"}),
        ({"filter": {"status": 99}}, {"filter.status"}),
        ({"filter": {"direction": 7}}, {"filter.direction"}),
        ({"filter": {"label": "x" * 65}}, {"filter.label"}),
        ({"filter": {"created_after": "2024-05-02T00:00:00Z", "created_before": "2024-05-01T00:00:00Z"}}, {"filter.created_before"}),
        ({"filter": {"party": "+1", "status": 42, "label": "a;b"}}, {"filter.party", "filter.status", "filter.label"}),
        ({"page_size": -1}, {"page_size"}),
    ],
)
def test_bad_filters_name_their_fields(tenant, request_fields, bad_fields, tmp_path):
    with calls_client(tenant) as calls:
        with pytest.raises(InvalidArgumentError) as caught:
            calls.list_calls(request_fields)
        assert violated_fields(caught.value) == bad_fields
        if "filter" in request_fields:
            with pytest.raises(InvalidArgumentError) as caught:
                calls.export_calls(tmp_path / "calls.csv", request_fields["filter"])
            assert violated_fields(caught.value) == bad_fields
            assert list(tmp_path.iterdir()) == []  # no file, not even a partial one


def test_large_page_sizes_are_read_as_a_thousand(tenant, db):
    insert_calls(db, tenant, *({} for _ in range(3)))
    with calls_client(tenant) as calls:
        assert len(calls.list_calls(page_size=5000).calls) == 3


# --- UpdateCallRecord -----------------------------------------------------------------------


def test_update_marks_a_call_and_leaves_unset_fields_alone(tenant, db):
    [ref] = insert_calls(db, tenant, {"labels": ["old"], "note": "keep me"})
    with calls_client(tenant) as calls:
        before = calls.list_calls().calls[0]
        updated = calls.update_call_record(ref=ref, starred=True, read=True)
        assert (updated.starred, updated.read, updated.archived) == (True, True, False)
        assert updated.note == "keep me" and list(updated.labels) == ["old"]
        assert updated.update_time.ToDatetime() > before.update_time.ToDatetime()

        updated = calls.update_call_record(
            ref=ref, starred=False, archived=True, note="call back", labels=["vip ", "b", "vip"]
        )
        assert (updated.starred, updated.archived, updated.read) == (False, True, True)
        assert updated.note == "call back"
        assert list(updated.labels) == ["b", "vip"]  # trimmed, once each, sorted
        assert listed(calls, label="vip") == [ref] and listed(calls, label="old") == []

        updated = calls.update_call_record(ref=ref, note="kept")  # the labels, not named, are left alone
        assert list(updated.labels) == ["b", "vip"] and updated.note == "kept"
        updated = calls.update_call_record(ref=ref, note="", labels=[])  # named with their defaults: cleared
        assert updated.note == "" and list(updated.labels) == []
        assert updated == calls.list_calls().calls[0]
        # A mask given by the caller decides alone: `read` is named, `starred` is not.
        updated = calls.update_call_record(ref=ref, starred=False, read=False, update_mask="read")
        assert (updated.starred, updated.read) == (False, False)


def test_update_honours_the_etag_and_names_an_unknown_mask_path(tenant, db):
    [ref] = insert_calls(db, tenant, {})
    with calls_client(tenant) as calls:
        first = calls.get_call(ref)
        assert first.etag
        marked = calls.update_call_record(ref=ref, starred=True, etag=first.etag)
        assert marked.etag != first.etag
        with pytest.raises(AbortedError):
            calls.update_call_record(ref=ref, read=True, etag=first.etag)
        assert not calls.get_call(ref).read
        with pytest.raises(InvalidArgumentError) as caught:
            calls.update_call_record(ref=ref, note="x", update_mask="note,status")
        assert violated_fields(caught.value) == {"update_mask"}
        with pytest.raises(AbortedError) as stale:
            calls.batch_update_call_records(requests=[
                {"ref": ref, "note": "a", "etag": marked.etag},
                {"ref": ref, "note": "b", "etag": first.etag},
            ])
        assert "requests[1]" in stale.value.message
        assert calls.get_call(ref).note == ""

    labels = db.transaction(lambda s: s.scalar(select(func.count()).select_from(CallLabel).join(Call).where(
        Call.ref == ref)), write=False)
    assert labels == 0


def test_every_mutation_moves_the_version(tenant, db):
    [ref] = insert_calls(db, tenant, {})

    def version() -> int:
        return db.transaction(lambda s: s.scalar(select(Call.version).where(Call.ref == ref)), write=False)

    with calls_client(tenant) as calls:
        first = version()
        calls.update_call_record(ref=ref, labels=["a"])  # only the labels table changes
        second = version()
        calls.batch_update_call_records(requests=[{"ref": ref, "read": True}])
        assert first < second < version()


@pytest.mark.parametrize(
    ("fields", "bad_fields"),
    [
        ({"note": "n" * 1001}, {"note"}),
        ({"labels": [f"l{i}" for i in range(21)]}, {"labels"}),
        ({"labels": ["ok", " ", "x" * 65]}, {"labels[1]", "labels[2]"}),
        ({"labels": ["a;b", "tab\there"]}, {"labels[0]", "labels[1]"}),
        ({"ref": "", "note": "n" * 1001}, {"ref", "note"}),
    ],
)
def test_update_rejects_bad_marks_naming_each_field(tenant, db, fields, bad_fields):
    [ref] = insert_calls(db, tenant, {})
    with calls_client(tenant) as calls:
        with pytest.raises(InvalidArgumentError) as caught:
            calls.update_call_record({"ref": ref, **fields})
        assert violated_fields(caught.value) == bad_fields


def test_update_accepts_the_limits(tenant, db):
    [ref] = insert_calls(db, tenant, {})
    labels = [f"{i:02d}" + "x" * 62 for i in range(20)]
    with calls_client(tenant) as calls:
        updated = calls.update_call_record(ref=ref, note="n" * 1000, labels=labels)
        assert len(updated.note) == 1000 and list(updated.labels) == labels


def test_update_of_an_unknown_or_foreign_call_is_not_found(tenant, other_tenant, db):
    [foreign] = insert_calls(db, other_tenant, {})
    with calls_client(tenant) as calls:
        for ref in ("nope", foreign):
            with pytest.raises(NotFoundError) as caught:
                calls.update_call_record(ref=ref, starred=True)
            assert ref in caught.value.message
    with calls_client(other_tenant) as others:
        assert others.list_calls().calls[0].starred is False


# --- BatchUpdateCallRecords -----------------------------------------------------------------


def test_batch_update_marks_every_call_in_order(tenant, db):
    refs = insert_calls(db, tenant, *({} for _ in range(3)))
    with calls_client(tenant) as calls:
        response = calls.batch_update_call_records(requests=[
            {"ref": refs[2], "starred": True},
            {"ref": refs[0], "labels": ["vip"]},
            {"ref": refs[2], "note": "twice"},  # the same call twice: both apply, in order
        ])
        assert [c.ref for c in response.calls] == [refs[2], refs[0], refs[2]]
        assert response.calls[2].starred and response.calls[2].note == "twice"
        assert listed(calls, starred=True) == [refs[2]]
        assert listed(calls, label="vip") == [refs[0]]


def test_batch_update_is_all_or_nothing(tenant, other_tenant, db):
    refs = insert_calls(db, tenant, *({} for _ in range(3)))
    [foreign] = insert_calls(db, other_tenant, {})
    with calls_client(tenant) as calls:
        with pytest.raises(InvalidArgumentError) as caught:
            calls.batch_update_call_records(requests=[
                {"ref": refs[0], "starred": True},
                {"ref": refs[1], "note": "n" * 1001},
                {"ref": "", "labels": ["x" * 65]},
            ])
        assert violated_fields(caught.value) == {"requests[1].note", "requests[2].ref", "requests[2].labels[0]"}
        for unknown in ("nope", foreign):
            with pytest.raises(NotFoundError) as caught:
                calls.batch_update_call_records(requests=[
                    {"ref": refs[0], "starred": True},
                    {"ref": refs[1], "starred": True},
                    {"ref": unknown, "starred": True},
                ])
            assert "requests[2]" in caught.value.message
        assert listed(calls, starred=True) == []


def test_batch_update_sizes(tenant, db):
    refs = insert_calls(db, tenant, *({} for _ in range(1000)))
    with calls_client(tenant) as calls:
        response = calls.batch_update_call_records(requests=[{"ref": r, "read": True} for r in refs])
        assert len(response.calls) == 1000
        assert len(listed(calls, read=True)) == 1000
        for requests in ([], [{"ref": refs[0], "read": True}] * 1001):
            with pytest.raises(InvalidArgumentError) as caught:
                calls.batch_update_call_records(requests=requests)
            assert violated_fields(caught.value) == {"requests"}


# --- DeleteCallRecords ----------------------------------------------------------------------


def test_delete_removes_ended_calls_and_their_labels(tenant, db):
    refs = insert_calls(db, tenant, {"labels": ["a", "b"]}, {"status": "CANCELED", "hangup_cause": "CANCEL"}, {})
    with calls_client(tenant) as calls:
        calls.delete_call_records(refs=refs[:2])
        assert listed(calls) == [refs[2]]
    left = db.transaction(lambda s: s.scalar(select(func.count()).select_from(CallLabel).where(
        CallLabel.label.in_(["a", "b"]), CallLabel.call_id.not_in(select(Call.id)))), write=False)
    assert left == 0


def test_delete_is_all_or_nothing(tenant, other_tenant, db, calls_runner):
    refs = insert_calls(db, tenant, {}, {}, {"status": "IN_PROGRESS", "hangup_cause": None, "runner_id": calls_runner})
    [foreign] = insert_calls(db, other_tenant, {})
    with calls_client(tenant) as calls:
        for unknown in ("nope", foreign):
            with pytest.raises(NotFoundError) as caught:
                calls.delete_call_records(refs=[refs[0], unknown, "also-unknown"])
            assert "refs[1]" in caught.value.message and unknown in caught.value.message
        for status in ("IN_PROGRESS",):
            with pytest.raises(FailedPreconditionError) as caught:
                calls.delete_call_records(refs=refs)
            assert refs[2] in caught.value.message and status in caught.value.message
        assert listed(calls) == refs[::-1]
        with pytest.raises(InvalidArgumentError) as caught:
            calls.delete_call_records(refs=[])
        assert violated_fields(caught.value) == {"refs"}
        with pytest.raises(InvalidArgumentError) as caught:
            calls.delete_call_records(refs=["x"] * 1001)
        assert violated_fields(caught.value) == {"refs"}
        with pytest.raises(InvalidArgumentError) as caught:
            calls.delete_call_records(refs=[refs[0], ""])
        assert violated_fields(caught.value) == {"refs[1]"}
    with calls_client(other_tenant) as others:
        assert listed(others) == [foreign]


@pytest.mark.parametrize("status", ["QUEUED", "RINGING", "IN_PROGRESS"])
def test_a_call_that_has_not_ended_cannot_be_deleted(tenant, db, status, calls_runner):
    [ref] = insert_calls(db, tenant, {"status": status, "hangup_cause": None, "runner_id": calls_runner})
    with calls_client(tenant) as calls:
        with pytest.raises(FailedPreconditionError) as caught:
            calls.delete_call_records(refs=[ref])
        assert ref in caught.value.message and status in caught.value.message


# --- tenancy and roles ----------------------------------------------------------------------


def test_another_workspace_sees_none_of_the_history(tenant, other_tenant, db, tmp_path):
    mine = insert_calls(db, tenant, {"labels": ["vip"]}, {})
    theirs = insert_calls(db, other_tenant, {"labels": ["vip"]})
    with calls_client(tenant) as calls:
        assert listed(calls) == mine[::-1]
        assert listed(calls, label="vip") == [mine[0]]
        assert calls.export_calls(tmp_path / "mine.csv") == 2
        text = (tmp_path / "mine.csv").read_text()
        assert theirs[0] not in text and all(ref in text for ref in mine)


def test_a_reader_may_read_but_not_write(tenant, db, tmp_path):
    [ref] = insert_calls(db, tenant, {})
    with calls_client(tenant, Role.READER) as calls:
        assert listed(calls) == [ref]
        assert calls.export_calls(tmp_path / "calls.csv") == 1
        for write in (
            lambda: calls.update_call_record(ref=ref, starred=True),
            lambda: calls.batch_update_call_records(requests=[{"ref": ref, "starred": True}]),
            lambda: calls.delete_call_records(refs=[ref]),
        ):
            with pytest.raises(PermissionDeniedError):
                write()


# --- ExportCalls ----------------------------------------------------------------------------


def read_csv(path) -> list[list[str]]:  # type: ignore[no-untyped-def]
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_export_writes_every_column(tenant, db, tmp_path):
    answered = T0 + timedelta(seconds=5)
    refs = insert_calls(
        db, tenant,
        {"direction": "INBOUND", "from_party": "+442079460000", "to_party": "+14155550100", "caller_id": "+442079460000",
         "answer_time": answered, "end_time": answered + timedelta(seconds=62, milliseconds=500), "starred": True,
         "read": True, "note": 'Said "call back",\nthen hung up', "labels": ["vip", "sales"]},
        {"status": "NO_ANSWER", "hangup_cause": "NO_ANSWER", "to_party": "sip:bob@example.com",
         "end_time": T0 + timedelta(minutes=1, seconds=30), "archived": True},
    )
    path = tmp_path / "calls.csv"
    with calls_client(tenant) as calls:
        assert calls.export_calls(path) == 2
    header, *rows = read_csv(path)
    assert header == HEADER
    assert rows == [
        [refs[1], "OUTBOUND", "NO_ANSWER", "NO_ANSWER", "+14155550100", "sip:bob@example.com", "",
         "2024-05-01T12:01:00.000Z", "", "2024-05-01T12:01:30.000Z", "0", "false", "true", "false", "", ""],
        [refs[0], "INBOUND", "COMPLETED", "NORMAL_CLEARING", "+442079460000", "+14155550100", "+442079460000",
         "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:05.000Z", "2024-05-01T12:01:07.500Z", "62.5", "true", "false",
         "true", 'Said "call back",\nthen hung up', "sales;vip"],
    ]


def test_export_applies_the_filter_and_an_empty_one_is_the_header(tenant, history, tmp_path):
    with calls_client(tenant) as calls:
        assert calls.export_calls(tmp_path / "a.csv", {"party": "+44 20 7946 0000"}) == 2
        assert [row[0] for row in read_csv(tmp_path / "a.csv")[1:]] == [history["to_uk"], history["inbound"]]
        assert calls.export_calls(tmp_path / "b.csv", pb.CallFilter(label="vip")) == 1
        assert calls.export_calls(tmp_path / "c.csv", {"label": "nobody"}) == 0
        assert read_csv(tmp_path / "c.csv") == [HEADER]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", "c.csv"]


def test_async_export(tenant, history, tmp_path):
    async def export() -> int:
        calls: AsyncCalls
        async with tenant.async_calls() as calls:
            with pytest.raises(InvalidArgumentError):
                await calls.export_calls(tmp_path / "bad.csv", {"status": 99})
            return await calls.export_calls(tmp_path / "calls.csv", {"direction": "DIRECTION_OUTBOUND"})

    assert asyncio.run(export()) == len(history) - 1
    assert len(read_csv(tmp_path / "calls.csv")) == len(history)
    assert [p.name for p in tmp_path.iterdir()] == ["calls.csv"]


def bulk_insert(db, tenant, count: int) -> None:  # type: ignore[no-untyped-def]
    """`count` ended calls with Core executemany, a few thousand rows at a time."""
    ws = workspace_id(db, tenant)
    prefix = secrets.token_hex(4)

    def load(session):  # type: ignore[no-untyped-def]
        for start in range(0, count, 5000):
            session.execute(insert(Call.__table__), [
                {
                    "ref": f"{prefix}{i:08x}", "workspace_id": ws, "from_party": "+14155550100",
                    "to_party": f"+1415555{i % 10000:04d}", "caller_id": "+14155550100", "device_id": "",
                    "direction": "OUTBOUND", "status": "COMPLETED", "hangup_cause": "NORMAL_CLEARING",
                    "muted": False, "on_hold": False, "recording": False, "timeout_seconds": 30, "metadata": {},
                    "create_time": T0 + timedelta(seconds=i), "update_time": T0 + timedelta(seconds=i),
                    "answer_time": T0 + timedelta(seconds=i, milliseconds=1500),
                    "end_time": T0 + timedelta(seconds=i + 61), "starred": i % 2 == 0, "archived": False,
                    "read": False, "note": f"customer {i} asked for a call back about the invoice", "version": 1,
                }
                for i in range(start, min(count, start + 5000))
            ])

    db.transaction(load, write=True)


def test_export_of_100000_calls_streams_in_flat_memory(tenant, db, tmp_path):
    bulk_insert(db, tenant, 100_000)
    path = tmp_path / "calls.csv"
    with calls_client(tenant) as calls:
        calls.list_calls(page_size=1)  # the channel is open before measuring
        tracemalloc.start()
        try:
            rows = calls.export_calls(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert rows == 100_000
    size = path.stat().st_size
    with open(path, newline="") as file:
        reader = csv.reader(file)
        assert next(reader) == HEADER
        assert sum(1 for _ in reader) == 100_000
    # The whole CSV is ~13 MB, and 100,000 rows as Python objects several times that; the export holds one
    # chunk of 1,000 rows (and its row tuples) at a time, in the server's thread and this one.
    assert size > 12_000_000
    assert peak < 8_000_000, f"export peak {peak:,} bytes for a {size:,}-byte CSV"


# --- grpcurl --------------------------------------------------------------------------------


def test_grpcurl_streams_the_export_as_base64_chunks(server, tenant, db):
    refs = insert_calls(db, tenant, *({"labels": ["cli"]} for _ in range(3)))
    done = grpcurl(
        server.address, "voxplane.calls.v1.Calls/ExportCalls", key=tenant.keys[Role.READER],
        data={"filter": {"label": "cli"}},
    )
    assert done.returncode == 0, done.stderr
    decoder, text, position = json.JSONDecoder(), done.stdout.strip(), 0
    chunks = []
    while position < len(text):  # grpcurl prints one JSON object per streamed message
        chunk, position = decoder.raw_decode(text, position)
        chunks.append(chunk)
        position = len(text) - len(text[position:].lstrip())
    data = b"".join(base64.b64decode(chunk["data"]) for chunk in chunks)
    header, *rows = list(csv.reader(io.StringIO(data.decode())))
    assert header == HEADER
    assert [row[0] for row in rows] == refs[::-1]

    failed = grpcurl(server.address, "voxplane.calls.v1.Calls/ExportCalls", key=tenant.keys[Role.READER],
                     data={"filter": {"party": "nope"}})
    assert failed.returncode != 0
    assert "InvalidArgument" in failed.stderr and "filter.party" in failed.stderr
