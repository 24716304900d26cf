"""Calls RPCs of the history: list, mark, delete and export the calls a workspace made and received."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timezone
from typing import Any

from sqlalchemy.orm import Session

from voxplane.calls.v1 import calls_pb2 as pb

from ..core.auth import Access, Caller
from ..core.convert import enum_name, optional
from ..core.errors import InvalidArgument, Violations
from ..core.rpc import Incoming, rpc
from . import history
from .models import Call


def _enum(v: Violations, enum_type: Any, value: int, field: str) -> str | None:
    if not value:
        return None
    try:
        return enum_name(enum_type, value, field)
    except InvalidArgument as error:
        for violation in error.violations:
            v.add(violation.field, violation.description)
        return None


def filter_from(message: pb.CallFilter) -> history.CallFilter:
    """The request's CallFilter, checked and normalised; every bad field is named `filter.<field>`."""
    v = Violations()
    raw = history.CallFilter(
        direction=_enum(v, pb.Direction, message.direction, "filter.direction"),
        status=_enum(v, pb.CallStatus, message.status, "filter.status"),
        number=message.number or None,
        start_time=message.start_time.ToDatetime(timezone.utc) if message.HasField("start_time") else None,
        end_time=message.end_time.ToDatetime(timezone.utc) if message.HasField("end_time") else None,
        starred=optional(message, "starred"),  # type: ignore[arg-type]
        archived=optional(message, "archived"),  # type: ignore[arg-type]
        read=optional(message, "read"),  # type: ignore[arg-type]
        label=message.label or None,
    )
    call_filter = history.checked_filter(v, raw)
    v.raise_if_any()
    return call_filter


def marks_from(request: pb.UpdateCallRecordRequest) -> history.Marks:
    return history.Marks(
        starred=optional(request, "starred"),  # type: ignore[arg-type]
        archived=optional(request, "archived"),  # type: ignore[arg-type]
        read=optional(request, "read"),  # type: ignore[arg-type]
        note=optional(request, "note"),  # type: ignore[arg-type]
        labels=list(request.labels) if request.set_labels else None,
    )


def _call_proto(call: Call) -> pb.Call:
    from .servicer import call_proto  # servicer.py imports this module

    return call_proto(call)


class HistoryRpcs:
    """ListCalls, UpdateCallRecord, BatchUpdateCallRecords, DeleteCallRecords and ExportCalls."""

    @rpc(Access.READ)
    def ListCalls(self, request: pb.ListCallsRequest, caller: Caller, session: Session) -> pb.ListCallsResponse:
        call_filter = filter_from(request.filter)
        calls, next_token = self.tokens.page(  # type: ignore[attr-defined]
            history.scope(caller, call_filter),
            request,
            lambda before, size: history.list_calls(session, caller, call_filter, before, size),
        )
        return pb.ListCallsResponse(calls=[_call_proto(c) for c in calls], next_page_token=next_token)

    @rpc(Access.WRITE)
    def UpdateCallRecord(self, request: pb.UpdateCallRecordRequest, caller: Caller, session: Session) -> pb.Call:
        return _call_proto(history.update_record(session, caller, request.ref, marks_from(request)))

    @rpc(Access.WRITE)
    def BatchUpdateCallRecords(
        self, request: pb.BatchUpdateCallRecordsRequest, caller: Caller, session: Session
    ) -> pb.BatchUpdateCallRecordsResponse:
        calls = history.update_records(session, caller, [(item.ref, marks_from(item)) for item in request.requests])
        return pb.BatchUpdateCallRecordsResponse(calls=[_call_proto(c) for c in calls])

    @rpc(Access.WRITE)
    def DeleteCallRecords(
        self, request: pb.DeleteCallRecordsRequest, caller: Caller, session: Session
    ) -> pb.DeleteCallRecordsResponse:
        history.delete_records(session, caller, request.refs)
        return pb.DeleteCallRecordsResponse()

    @rpc(Access.READ)
    async def ExportCalls(
        self, request: pb.ExportCallsRequest, caller: Caller, incoming: Incoming
    ) -> AsyncIterator[pb.ExportCallsChunk]:
        """One chunk per database round trip (one short read transaction each), so memory stays flat."""
        call_filter = filter_from(request.filter)
        db = self.db  # type: ignore[attr-defined]

        header = history.export_header()
        before: int | None = 0
        while before is not None:
            data, before = await db.run_transaction(
                lambda session, after=before: history.export_chunk(session, caller, call_filter, after), write=False
            )
            if header:
                data, header = header + data, b""
            if data:
                yield pb.ExportCallsChunk(data=data)
