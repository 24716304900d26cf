"""Numbers RPCs that work on many numbers at once: up to 1,000 per call, all of them or none."""

from __future__ import annotations

from typing import cast

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.auth import Access, Caller
from ..core.rpc import rpc
from ..core.servicer import Servicer
from . import batch
from .messages import VIEW, basic_number_proto, number_proto, routing_from, settings_from
from .models import Number


def _create(item: pb.CreateNumberRequest) -> batch.Create:
    return batch.Create(
        name=item.name,
        provider_ref=item.provider_ref,
        e164_number=item.e164_number,
        routing=routing_from(item),
        settings=settings_from(item) if item.HasField("settings") else batch.DEFAULT_SETTINGS,
        porting_in=item.porting_in,
        request_id=item.request_id,
    )


class BatchRpcs(Servicer):
    @rpc(Access.WRITE)
    def BatchCreateNumbers(
        self, request: pb.BatchCreateNumbersRequest, caller: Caller, session: Session
    ) -> pb.BatchCreateNumbersResponse:
        proto = basic_number_proto if VIEW.name(request.view, "view") == "BASIC" else number_proto
        numbers = batch.create_numbers(session, caller, request.requests, _create)
        # A NewNumber (a row inserted without the ORM) reads as a Number does.
        return pb.BatchCreateNumbersResponse(numbers=[proto(cast(Number, n)) for n in numbers])

    @rpc(Access.WRITE)
    def BatchDeleteNumbers(
        self, request: pb.BatchDeleteNumbersRequest, caller: Caller, session: Session
    ) -> pb.BatchDeleteNumbersResponse:
        batch.delete_numbers(session, caller, request.refs)
        return pb.BatchDeleteNumbersResponse()
