"""Numbers RPCs for the subscriber a number is registered to and its emergency (E911) address."""

from __future__ import annotations

from sqlalchemy.orm import Session

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.auth import Access, Caller
from ..core.convert import timestamp
from ..core.rpc import rpc
from . import subscriber as rules
from .models import EmergencyAddress, Subscriber


def subscriber_proto(subscriber: Subscriber | None) -> pb.Subscriber:
    if subscriber is None:
        return pb.Subscriber(status=pb.SUBSCRIBER_STATUS_UNKNOWN)
    return pb.Subscriber(
        first_name=subscriber.first_name,
        name=subscriber.name,
        address1=subscriber.address1,
        address2=subscriber.address2,
        address3=subscriber.address3,
        address4=subscriber.address4,
        postcode=subscriber.postcode,
        status=pb.SubscriberStatus.Value(f"SUBSCRIBER_STATUS_{subscriber.status}"),
        rejection_reason=subscriber.rejection_reason,
        update_time=timestamp(subscriber.update_time),
    )


def emergency_address_proto(address: EmergencyAddress) -> pb.EmergencyAddress:
    return pb.EmergencyAddress(
        street_address=address.street_address,
        extended_address=address.extended_address,
        locality=address.locality,
        region=address.region,
        postal_code=address.postal_code,
        country=address.country,
        status=pb.EmergencyAddressStatus.Value(f"EMERGENCY_ADDRESS_STATUS_{address.status}"),
        problems=address.problems,
    )


def subscriber_details(request: pb.UpdateSubscriberRequest) -> rules.SubscriberDetails:
    return rules.SubscriberDetails(
        first_name=request.first_name,
        name=request.name,
        address1=request.address1,
        address2=request.address2,
        address3=request.address3,
        address4=request.address4,
        postcode=request.postcode,
    )


def civic_address(request: pb.SetEmergencyAddressRequest) -> rules.CivicAddress | None:
    """The request's address (its output-only `status` and `problems` ignored), or None when not sent."""
    if not request.HasField("address"):
        return None
    a = request.address
    return rules.CivicAddress(
        street_address=a.street_address,
        extended_address=a.extended_address,
        locality=a.locality,
        region=a.region,
        postal_code=a.postal_code,
        country=a.country,
    )


class SubscriberRpcs:
    """UpdateSubscriber, ReviewSubscriber, SetEmergencyAddress, EnableEmergency (mixed into NumbersServicer)."""

    # number_proto is imported in each method: servicer.py imports this module.

    @rpc(Access.WRITE)
    def UpdateSubscriber(self, request: pb.UpdateSubscriberRequest, caller: Caller, session: Session) -> pb.Number:
        from .servicer import number_proto

        details = subscriber_details(request)
        return number_proto(rules.update_subscriber(session, caller, request.ref, details, request.etag))

    @rpc(Access.OPERATE)
    def ReviewSubscriber(self, request: pb.ReviewSubscriberRequest, caller: Caller, session: Session) -> pb.Number:
        from .servicer import number_proto

        number = rules.review_subscriber(session, request.ref, request.approve, request.rejection_reason)
        return number_proto(number)

    @rpc(Access.WRITE)
    def SetEmergencyAddress(
        self, request: pb.SetEmergencyAddressRequest, caller: Caller, session: Session
    ) -> pb.Number:
        from .servicer import number_proto

        address = civic_address(request)
        return number_proto(rules.set_emergency_address(session, caller, request.ref, address, request.etag))

    @rpc(Access.WRITE)
    def EnableEmergency(self, request: pb.EnableEmergencyRequest, caller: Caller, session: Session) -> pb.Number:
        from .servicer import number_proto

        return number_proto(rules.enable_emergency(session, caller, request.ref, request.enabled, request.etag))
