"""Numbers over gRPC: proto in, provisioning call, proto out."""

from __future__ import annotations

from datetime import timezone
from typing import Any

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.numbers.v1 import numbers_pb2_grpc

from ..core.auth import Access, Caller
from ..core.convert import enum_name, optional, timestamp
from ..core.paging import PageTokens
from ..core.rpc import Incoming, rpc
from ..persistence.db import Database
from . import provisioning
from .models import STATES, Number
from .provisioning import Routing, Settings
from .servicer_batch import BatchRpcs
from .servicer_catalog import CatalogRpcs, classification_proto
from .servicer_inventory import InventoryRpcs, LifecycleRpcs
from .servicer_subscriber import SubscriberRpcs, emergency_address_proto, subscriber_proto


def routing_from(message: Any) -> Routing | None:
    """The routing oneof of a request, or None when it is not set."""
    which = message.WhichOneof("routing")
    if which == "ingress_info":
        return Routing(webhook=message.ingress_info.webhook, app_ref=message.ingress_info.app_ref)
    return Routing(**{which: getattr(message, which)}) if which else None


def set_routing(message: Any, routing: Routing) -> None:
    if routing.aor_link is not None:
        message.aor_link = routing.aor_link
    elif routing.forward_sip_to is not None:
        message.forward_sip_to = routing.forward_sip_to
    elif routing.webhook or routing.app_ref:
        message.ingress_info.webhook = routing.webhook or ""
        message.ingress_info.app_ref = routing.app_ref or ""


def settings_from(message: Any) -> Settings:
    """The NumberSettings of a request; fields the caller did not set are None."""
    settings = message.settings
    context = optional(settings, "context")
    return Settings(
        recording_enabled=optional(settings, "recording_enabled"),
        caller_id_prefix=optional(settings, "caller_id_prefix"),
        caller_id_passthrough=optional(settings, "caller_id_passthrough"),
        context=enum_name(pb.NumberContext, context, "settings.context") if context is not None else None,
    )


def basic_number_proto(number: Number) -> pb.Number:
    """A Number in NUMBER_VIEW_BASIC."""
    return pb.Number(ref=number.ref, e164_number=number.e164_number, state=_STATES[number.state], etag=number.etag)


_STATES = {state: pb.NumberState.Value(f"NUMBER_STATE_{state}") for state in STATES}


def number_proto(number: Number) -> pb.Number:
    message = pb.Number(
        ref=number.ref,
        name=number.name,
        provider_ref=number.provider_ref,
        e164_number=number.e164_number,
        create_time=timestamp(number.create_time),
        update_time=timestamp(number.update_time),
        etag=number.etag,
        state=_STATES[number.state],
        classification=classification_proto(number.e164_number),
        recording_enabled=number.recording_enabled,
        caller_id_prefix=number.caller_id_prefix,
        caller_id_passthrough=number.caller_id_passthrough,
        context=pb.NumberContext.Value(f"NUMBER_CONTEXT_{number.context}"),
        subscriber=subscriber_proto(number.subscriber),
        emergency_enabled=number.emergency_enabled,
        from_inventory=number.from_inventory,
    )
    if number.reserve_expire_time and number.state == "RESERVED":
        message.reserve_expire_time.CopyFrom(timestamp(number.reserve_expire_time))
    if number.release_time and number.state == "RELEASED":
        message.release_time.CopyFrom(timestamp(number.release_time))
    if number.emergency_address is not None:
        message.emergency_address.CopyFrom(emergency_address_proto(number.emergency_address))
    set_routing(message, provisioning.routing_of(number))
    return message


class NumbersServicer(
    InventoryRpcs, LifecycleRpcs, CatalogRpcs, SubscriberRpcs, BatchRpcs, numbers_pb2_grpc.NumbersServicer
):
    """The Numbers service. Its RPCs are grouped by topic in mixins (servicer_*.py)."""

    service_name = pb.DESCRIPTOR.services_by_name["Numbers"].full_name

    def __init__(self, db: Database, tokens: PageTokens):
        self.check_catalog_settings()
        self.db = db
        self.tokens = tokens

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
        number = provisioning.update_number(
            session,
            caller,
            request.ref,
            name=optional(request, "name"),
            provider_ref=optional(request, "provider_ref"),
            routing=routing_from(request),
            settings=settings_from(request),
            etag=request.etag,
        )
        return number_proto(number)

    @rpc(Access.READ)
    def ListNumbers(self, request: pb.ListNumbersRequest, caller: Caller, session: Session) -> pb.ListNumbersResponse:
        number_filter = provisioning.checked_filter(
            state=enum_name(pb.NumberState, request.state, "state") if request.state else None,
            e164_prefix=request.e164_prefix,
            provider_ref=request.provider_ref,
            created_after=request.created_after.ToDatetime(timezone.utc) if request.HasField("created_after") else None,
            created_before=request.created_before.ToDatetime(timezone.utc) if request.HasField("created_before") else None,
            name_contains=request.name_contains,
            aor_link=request.aor_link,
        )
        numbers, next_token = self.tokens.page(
            f"numbers/{caller.workspace_id}/{number_filter}",
            request,
            lambda after, size: provisioning.list_numbers(session, caller, number_filter, after, size),
        )
        return pb.ListNumbersResponse(numbers=[number_proto(n) for n in numbers], next_page_token=next_token)

    @rpc(Access.WRITE)
    def DeleteNumber(self, request: pb.DeleteNumberRequest, caller: Caller, session: Session) -> pb.DeleteNumberResponse:
        provisioning.delete_number(session, caller, request.ref, request.etag)
        return pb.DeleteNumberResponse()

    @rpc(Access.READ)
    async def GetIngressInfo(
        self, request: pb.GetIngressInfoRequest, caller: Caller, incoming: Incoming
    ) -> pb.GetIngressInfoResponse:
        route = await provisioning.ingress_route(self.db, caller, request.e164_number)
        response = pb.GetIngressInfoResponse(
            number_ref=route.number_ref, e164_number=route.e164_number, workspace_ref=route.workspace_ref
        )
        set_routing(response, route.routing)
        response.recording_enabled = bool(route.settings.recording_enabled)
        response.caller_id_prefix = route.settings.caller_id_prefix or ""
        response.caller_id_passthrough = bool(route.settings.caller_id_passthrough)
        return response
