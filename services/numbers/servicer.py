"""Numbers over gRPC: proto in, provisioning call, proto out. Assembled from one mixin per topic."""

from __future__ import annotations

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.numbers.v1 import numbers_pb2_grpc

from ..core.auth import Access, Caller
from ..core.convert import time_of
from ..core.errors import Violations
from ..core.paging import PageTokens
from ..core.rpc import Incoming, rpc
from ..core.servicer import Servicer
from ..persistence.db import Database
from . import catalog, provisioning
from .messages import STATE, number_proto, number_update, routing_from, set_routing, settings_from
from .servicer_batch import BatchRpcs
from .servicer_catalog import CatalogRpcs
from .servicer_inventory import InventoryRpcs, LifecycleRpcs
from .servicer_subscriber import SubscriberRpcs


class NumbersServicer(
    InventoryRpcs, LifecycleRpcs, CatalogRpcs, SubscriberRpcs, BatchRpcs, Servicer, numbers_pb2_grpc.NumbersServicer
):
    """The Numbers service: the standard methods and ingress here, the other topics in the mixins."""

    service_name = pb.DESCRIPTOR.services_by_name["Numbers"].full_name

    def __init__(self, db: Database, tokens: PageTokens):
        try:  # the classifier file and home region, now: bad settings stop the server from starting
            catalog.check_settings()
        except catalog.SettingsError as error:
            raise SystemExit(str(error)) from None
        super().__init__(db, tokens)

    @rpc(Access.WRITE)
    def CreateNumber(self, request: pb.CreateNumberRequest, caller: Caller, session: Session) -> pb.Number:
        number = provisioning.create_number(
            session,
            caller,
            name=request.name,
            provider_ref=request.provider_ref,
            e164_number=request.e164_number,
            routing=routing_from(request),
            settings=settings_from(request),
            porting_in=request.porting_in,
            request_id=request.request_id,
        )
        return number_proto(number)

    @rpc(Access.READ)
    def GetNumber(self, request: pb.GetNumberRequest, caller: Caller, session: Session) -> pb.Number:
        return number_proto(provisioning.get_number(session, caller, request.ref))

    @rpc(Access.WRITE)
    def UpdateNumber(self, request: pb.UpdateNumberRequest, caller: Caller, session: Session) -> pb.Number:
        fields, routing, settings = number_update(request)
        number = provisioning.update_number(
            session, caller, request.ref, **fields, routing=routing, settings=settings, etag=request.etag
        )
        return number_proto(number)

    @rpc(Access.READ)
    def ListNumbers(self, request: pb.ListNumbersRequest, caller: Caller, session: Session) -> pb.ListNumbersResponse:
        f = request.filter
        v = Violations()
        created_after = time_of(f, "created_after", v, "filter.created_after")
        created_before = time_of(f, "created_before", v, "filter.created_before")
        v.raise_if_any()
        number_filter = provisioning.checked_filter(
            state=STATE.name(f.state, "filter.state") if f.state else None,
            e164_prefix=f.e164_prefix,
            provider_ref=f.provider_ref,
            created_after=created_after,
            created_before=created_before,
            name_contains=f.name_contains,
            aor_link=f.aor_link,
        )
        def fetch(after: int | None, size: int) -> tuple[list[pb.Number], int | None]:
            page = provisioning.list_numbers(session, caller, number_filter, after, size)
            return [number_proto(n, page.subscribers.get(n.id), page.addresses.get(n.id)) for n in page.numbers], \
                page.last

        numbers, next_token = self.tokens.page(f"numbers/{caller.workspace_id}/{number_filter}", request, fetch)
        return pb.ListNumbersResponse(numbers=numbers, next_page_token=next_token)

    @rpc(Access.WRITE)
    def DeleteNumber(self, request: pb.DeleteNumberRequest, caller: Caller, session: Session) -> pb.DeleteNumberResponse:
        provisioning.delete_number(session, caller, request.ref, request.etag)
        return pb.DeleteNumberResponse()

    # The network's hot path: Calls' and the edge's service keys look up every inbound call, unlimited.
    @rpc(Access.READ, exempt_services=True,
         along=lambda request: provisioning.ingress_along(request.e164_number, request.include_suspended))
    async def GetIngressInfo(
        self, request: pb.GetIngressInfoRequest, caller: Caller, incoming: Incoming
    ) -> pb.GetIngressInfoResponse:
        route = await provisioning.ingress_route(self.db, caller, request.e164_number, request.include_suspended,
                                                 incoming.found)
        response = pb.GetIngressInfoResponse(
            number_ref=route.number_ref, e164_number=route.e164_number, workspace_ref=route.workspace_ref,
            state=STATE.number(route.state),
        )
        set_routing(response, route.routing)
        response.recording_enabled = bool(route.settings.recording_enabled)
        response.caller_id_prefix = route.settings.caller_id_prefix or ""
        response.caller_id_passthrough = bool(route.settings.caller_id_passthrough)
        return response

    @rpc(Access.READ, exempt_services=True)  # Messaging's service key, for every SMS of every workspace
    async def GetMessagingRoute(
        self, request: pb.GetMessagingRouteRequest, caller: Caller, incoming: Incoming
    ) -> pb.GetMessagingRouteResponse:
        route = await provisioning.messaging_route(self.db, caller, request.e164_number)
        return pb.GetMessagingRouteResponse(
            number_ref=route.number_ref, e164_number=route.e164_number, workspace_ref=route.workspace_ref,
            messaging_webhook=route.messaging_webhook,
        )
