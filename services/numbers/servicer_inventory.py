"""Numbers RPCs for the inventory (import, find, reserve, acquire) and the lifecycle."""

from __future__ import annotations

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.auth import Access, Caller
from ..core.convert import timedelta_of
from ..core.errors import Violations
from ..core.rpc import rpc
from ..core.servicer import Servicer
from . import inventory, lifecycle
from .messages import AVAILABILITY, number_proto, routing_from, settings_from


class InventoryRpcs(Servicer):
    @rpc(Access.OPERATE)
    def ImportInventory(
        self, request: pb.ImportInventoryRequest, caller: Caller, session: Session
    ) -> pb.ImportInventoryResponse:
        entries = [(e.e164_number, e.provider_ref) for e in request.entries]
        added, present = inventory.import_entries(session, entries)
        return pb.ImportInventoryResponse(added=added, already_present=present)

    @rpc(Access.READ)
    def ListAvailablePrefixes(
        self, request: pb.ListAvailablePrefixesRequest, caller: Caller, session: Session
    ) -> pb.ListAvailablePrefixesResponse:
        region = inventory.checked_region(request.region_code)
        prefixes, next_token = self.tokens.page(
            f"prefixes/{region}",
            request,
            lambda after, size: inventory.available_prefixes(session, region, after, size),
            key=str,
        )
        return pb.ListAvailablePrefixesResponse(
            prefixes=[pb.AvailablePrefix(**vars(p)) for p in prefixes], next_page_token=next_token
        )

    @rpc(Access.READ)
    def SearchAvailableNumbers(
        self, request: pb.SearchAvailableNumbersRequest, caller: Caller, session: Session
    ) -> pb.SearchAvailableNumbersResponse:
        v = Violations()
        prefix = inventory.e164_prefix(v, request.prefix, request.region_code)
        v.raise_if_any()
        numbers, next_token = self.tokens.page(
            f"search/{prefix}",
            request,
            lambda after, size: inventory.search(session, prefix, after, size),
            key=str,
        )
        return pb.SearchAvailableNumbersResponse(
            numbers=[pb.AvailableNumber(**vars(n)) for n in numbers], next_page_token=next_token
        )

    @rpc(Access.READ)
    def CheckAvailability(
        self, request: pb.CheckAvailabilityRequest, caller: Caller, session: Session
    ) -> pb.CheckAvailabilityResponse:
        results = inventory.check(session, list(request.e164_numbers))
        return pb.CheckAvailabilityResponse(
            results=[pb.AvailabilityResult(e164_number=n, availability=AVAILABILITY.number(a)) for n, a in results]
        )

    @rpc(Access.WRITE)
    def AcquireNumber(self, request: pb.AcquireNumberRequest, caller: Caller, session: Session) -> pb.Number:
        number = inventory.acquire(
            session,
            caller,
            request.e164_number,
            name=request.name,
            routing=routing_from(request),
            settings=settings_from(request),
            request_id=request.request_id,
        )
        return number_proto(number)

    @rpc(Access.WRITE)
    def ReserveNumber(self, request: pb.ReserveNumberRequest, caller: Caller, session: Session) -> pb.Number:
        v = Violations()
        hold = timedelta_of(request, "hold", v)
        v.raise_if_any()
        return number_proto(inventory.reserve(session, caller, request.e164_number, hold))


class LifecycleRpcs(Servicer):
    @rpc(Access.WRITE)
    def ActivateNumber(self, request: pb.ActivateNumberRequest, caller: Caller, session: Session) -> pb.Number:
        return number_proto(lifecycle.change_state(session, caller, request.ref, request.etag, lifecycle.ACTIVATE))

    @rpc(Access.WRITE)
    def SuspendNumber(self, request: pb.SuspendNumberRequest, caller: Caller, session: Session) -> pb.Number:
        return number_proto(lifecycle.change_state(session, caller, request.ref, request.etag, lifecycle.SUSPEND))

    @rpc(Access.WRITE)
    def ReleaseNumber(self, request: pb.ReleaseNumberRequest, caller: Caller, session: Session) -> pb.Number:
        return number_proto(lifecycle.change_state(session, caller, request.ref, request.etag, lifecycle.RELEASE))
