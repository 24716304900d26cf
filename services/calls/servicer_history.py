"""Calls RPCs of the history: list, mark, delete and export the calls a workspace made and received."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from sqlalchemy.orm import Session

from voxplane.calls.v1 import calls_pb2 as pb

from ..core.auth import Access, Caller
from ..core.rpc import Incoming, rpc
from ..core.servicer import Servicer
from ..persistence.export import csv_chunks
from . import history
from .messages import call_proto, filter_from, marks_from


class HistoryRpcs(Servicer):
    """ListCalls, UpdateCallRecord, BatchUpdateCallRecords, DeleteCallRecords and ExportCalls."""

    @rpc(Access.READ)
    def ListCalls(self, request: pb.ListCallsRequest, caller: Caller, session: Session) -> pb.ListCallsResponse:
        call_filter = filter_from(request.filter)

        def fetch(before: int | None, size: int) -> tuple[list[pb.Call], int | None]:
            page = history.list_calls(session, caller, call_filter, before, size)
            return [call_proto(c, page.participants.get(c.id, ()), page.labels.get(c.id, ())) for c in page.calls], page.last

        calls, next_token = self.tokens.page(history.scope(caller, call_filter), request, fetch)
        return pb.ListCallsResponse(calls=calls, next_page_token=next_token)

    @rpc(Access.WRITE)
    def UpdateCallRecord(self, request: pb.UpdateCallRecordRequest, caller: Caller, session: Session) -> pb.Call:
        return call_proto(history.update_record(session, caller, request.ref, marks_from(request), request.etag))

    @rpc(Access.WRITE)
    def BatchUpdateCallRecords(
        self, request: pb.BatchUpdateCallRecordsRequest, caller: Caller, session: Session
    ) -> pb.BatchUpdateCallRecordsResponse:
        calls = history.update_records(
            session, caller,
            [(item.ref, marks_from(item, f"requests[{i}]."), item.etag) for i, item in enumerate(request.requests)],
        )
        return pb.BatchUpdateCallRecordsResponse(calls=[call_proto(c) for c in calls])

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
        chunk = functools.partial(history.export_chunk, caller=caller, call_filter=filter_from(request.filter))
        async for data in csv_chunks(self.db, history.export_header(), chunk):
            yield pb.ExportCallsChunk(data=data)
