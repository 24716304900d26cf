"""Numbers RPCs for the inventory (import, find, reserve, acquire) and the lifecycle."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.auth import Access, Caller
from ..core.errors import Violations
from ..core.paging import page_size
from ..core.rpc import rpc
from . import inventory, lifecycle


def _number_proto(number: Any) -> pb.Number:
    from .servicer import number_proto  # servicer.py imports this module

    return number_proto(number)


class InventoryRpcs:
    @rpc(Access.OPERATE)
    def ImportInventory(self, request: pb.ImportInventoryRequest, caller: Caller, session: Session) -> Any:
        entries = [(e.e164_number, e.provider_ref) for e in request.entries]
        added, present = inventory.import_entries(session, entries)
        return pb.ImportInventoryResponse(added=added, already_present=present)

    @rpc(Access.READ)
    def ListAvailablePrefixes(self, request: pb.ListAvailablePrefixesRequest, caller: Caller, session: Session) -> Any:
        prefixes = inventory.available_prefixes(session, request.region_code)
        return pb.ListAvailablePrefixesResponse(prefixes=[pb.AvailablePrefix(**vars(p)) for p in prefixes])

    @rpc(Access.READ)
    def SearchAvailableNumbers(self, request: pb.SearchAvailableNumbersRequest, caller: Caller, session: Session
                               ) -> Any:
        v = Violations()
        prefix = inventory.e164_prefix(v, request.prefix, request.region_code)
        v.raise_if_any()
        scope = f"search/{prefix}"
        after = self.tokens.read(scope, request.page_token) or ""
        numbers, last = inventory.search(session, prefix, after, page_size(request.quantity, "quantity"))
        return pb.SearchAvailableNumbersResponse(
            numbers=[pb.AvailableNumber(**vars(n)) for n in numbers],
            next_page_token=self.tokens.issue(scope, last) if last else "",
        )

    @rpc(Access.READ)
    def CheckAvailability(self, request: pb.CheckAvailabilityRequest, caller: Caller, session: Session) -> Any:
        results = inventory.check(session, list(request.e164_numbers))
        return pb.CheckAvailabilityResponse(
            results=[pb.AvailabilityResult(e164_number=n, availability=f"AVAILABILITY_{a}") for n, a in results]
        )

    @rpc(Access.WRITE)
    def AcquireNumber(self, request: pb.AcquireNumberRequest, caller: Caller, session: Session) -> pb.Number:
        from .servicer import routing_from, settings_from

        number = inventory.acquire(
            session,
            caller,
            request.e164_number,
            name=request.name,
            routing=routing_from(request),
            settings=settings_from(request),
            request_id=request.request_id,
        )
        return _number_proto(number)

    @rpc(Access.WRITE)
    def ReserveNumber(self, request: pb.ReserveNumberRequest, caller: Caller, session: Session) -> pb.Number:
        hold = request.hold.ToTimedelta() if request.HasField("hold") else None
        return _number_proto(inventory.reserve(session, caller, request.e164_number, hold))


class LifecycleRpcs:
    @rpc(Access.WRITE)
    def ActivateNumber(self, request: pb.ActivateNumberRequest, caller: Caller, session: Session) -> pb.Number:
        return _number_proto(lifecycle.change_state(session, caller, request.ref, request.etag, lifecycle.ACTIVATE))

    @rpc(Access.WRITE)
    def SuspendNumber(self, request: pb.SuspendNumberRequest, caller: Caller, session: Session) -> pb.Number:
        return _number_proto(lifecycle.change_state(session, caller, request.ref, request.etag, lifecycle.SUSPEND))

    @rpc(Access.WRITE)
    def ReleaseNumber(self, request: pb.ReleaseNumberRequest, caller: Caller, session: Session) -> pb.Number:
        return _number_proto(lifecycle.change_state(session, caller, request.ref, request.etag, lifecycle.RELEASE))
