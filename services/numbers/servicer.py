"""Numbers over gRPC: proto in, provisioning call, proto out."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.numbers.v1 import numbers_pb2_grpc

from ..core.auth import Access, Caller
from ..core.convert import optional, timestamp
from ..core.paging import PageTokens
from ..core.rpc import rpc
from ..persistence.db import Database
from . import provisioning
from .models import Number
from .provisioning import Routing


def routing_from(message: Any) -> Routing | None:
    """The routing oneof of a request, or None when it is not set."""
    which = message.WhichOneof("routing")
    if which == "aor_link":
        return Routing(aor_link=message.aor_link)
    if which == "ingress_info":
        return Routing(webhook=message.ingress_info.webhook, app_ref=message.ingress_info.app_ref)
    return None


def set_routing(message: Any, routing: Routing) -> None:
    if routing.aor_link is not None:
        message.aor_link = routing.aor_link
    else:
        message.ingress_info.webhook = routing.webhook or ""
        message.ingress_info.app_ref = routing.app_ref or ""


def number_proto(number: Number) -> pb.Number:
    message = pb.Number(
        ref=number.ref,
        name=number.name,
        provider_ref=number.provider_ref,
        e164_number=number.e164_number,
        create_time=timestamp(number.create_time),
        update_time=timestamp(number.update_time),
        etag=number.etag,
    )
    set_routing(message, provisioning.routing_of(number))
    return message


class NumbersServicer(numbers_pb2_grpc.NumbersServicer):
    service_name = pb.DESCRIPTOR.services_by_name["Numbers"].full_name

    def __init__(self, db: Database, tokens: PageTokens):
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
            etag=request.etag,
        )
        return number_proto(number)

    @rpc(Access.READ)
    def ListNumbers(self, request: pb.ListNumbersRequest, caller: Caller, session: Session) -> pb.ListNumbersResponse:
        numbers, next_token = self.tokens.page(
            f"numbers/{caller.workspace_id}",
            request,
            lambda after, size: provisioning.list_numbers(session, caller, after, size),
        )
        return pb.ListNumbersResponse(numbers=[number_proto(n) for n in numbers], next_page_token=next_token)

    @rpc(Access.WRITE)
    def DeleteNumber(self, request: pb.DeleteNumberRequest, caller: Caller, session: Session) -> pb.DeleteNumberResponse:
        provisioning.delete_number(session, caller, request.ref, request.etag)
        return pb.DeleteNumberResponse()

    @rpc(Access.READ, quick=True)
    def GetIngressInfo(self, request: pb.GetIngressInfoRequest, caller: Caller) -> pb.GetIngressInfoResponse:
        route = provisioning.ingress_route(self.db, caller, request.e164_number)
        response = pb.GetIngressInfoResponse(
            number_ref=route.number_ref, e164_number=route.e164_number, workspace_ref=route.workspace_ref
        )
        set_routing(response, route.routing)
        return response
