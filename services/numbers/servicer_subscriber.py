"""Numbers RPCs for the subscriber a number is registered to and its emergency (E911) address."""

from __future__ import annotations

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.auth import Access, Caller
from ..core.rpc import rpc
from ..core.servicer import Servicer
from . import subscriber as rules
from .messages import civic_address, number_proto, subscriber_details


class SubscriberRpcs(Servicer):
    """UpdateSubscriber, ReviewSubscriber, SetEmergencyAddress, EnableEmergency."""

    @rpc(Access.WRITE)
    def UpdateSubscriber(self, request: pb.UpdateSubscriberRequest, caller: Caller, session: Session) -> pb.Number:
        details = subscriber_details(request)
        return number_proto(rules.update_subscriber(session, caller, request.ref, details, request.etag))

    @rpc(Access.OPERATE)
    def ReviewSubscriber(self, request: pb.ReviewSubscriberRequest, caller: Caller, session: Session) -> pb.Number:
        number = rules.review_subscriber(session, request.ref, request.approve, request.rejection_reason)
        return number_proto(number)

    @rpc(Access.WRITE)
    def SetEmergencyAddress(
        self, request: pb.SetEmergencyAddressRequest, caller: Caller, session: Session
    ) -> pb.Number:
        address = civic_address(request)
        return number_proto(rules.set_emergency_address(session, caller, request.ref, address, request.etag))

    @rpc(Access.WRITE)
    def EnableEmergency(self, request: pb.EnableEmergencyRequest, caller: Caller, session: Session) -> pb.Number:
        return number_proto(rules.enable_emergency(session, caller, request.ref, request.enabled, request.etag))
