"""Numbers' conversions between proto messages and the rules' objects, for every servicer module."""

from __future__ import annotations

import functools
from typing import Any

from voxplane.numbers.v1 import numbers_pb2 as pb

from ..core.convert import ProtoEnum, changed_fields, optional, timestamp
from ..persistence.base import etag_of
from . import catalog
from . import subscriber as rules
from .models import EmergencyAddress, Number, Subscriber
from .provisioning import NO_ROUTING, Routing, Settings, routing_of

STATE = ProtoEnum(pb.NumberState)
CONTEXT = ProtoEnum(pb.NumberContext)
VIEW = ProtoEnum(pb.NumberView)
NUMBER_TYPE = ProtoEnum(pb.NumberType)
SUBSCRIBER_STATUS = ProtoEnum(pb.SubscriberStatus)
EMERGENCY_ADDRESS_STATUS = ProtoEnum(pb.EmergencyAddressStatus)
AVAILABILITY = ProtoEnum(pb.Availability)


# What UpdateNumber's update_mask may name.
ROUTING_FIELDS = ("aor_link", "ingress_info", "forward_sip_to")
SETTINGS_FIELDS = tuple(f"settings.{name}" for name in pb.NumberSettings.DESCRIPTOR.fields_by_name)
UPDATE_NUMBER_FIELDS = ("name", "provider_ref", *ROUTING_FIELDS, "settings", *SETTINGS_FIELDS)
UPDATE_SUBSCRIBER_FIELDS = ("first_name", "name", "address1", "address2", "address3", "address4", "postcode")


def routing_from(message: Any) -> Routing | None:
    """The routing oneof of a request, or None when it is not set."""
    which = message.WhichOneof("routing")
    if which == "ingress_info":
        return Routing(webhook=message.ingress_info.webhook)
    return Routing(**{which: getattr(message, which)}) if which else None


def set_routing(message: Any, routing: Routing) -> None:
    if routing.aor_link is not None:
        message.aor_link = routing.aor_link
    elif routing.forward_sip_to is not None:
        message.forward_sip_to = routing.forward_sip_to
    elif routing.webhook:
        message.ingress_info.webhook = routing.webhook


def settings_from(message: Any) -> Settings:
    """The NumberSettings of a create; fields the caller did not set are None (their defaults)."""
    settings = message.settings
    context = optional(settings, "context")
    return Settings(
        recording_enabled=optional(settings, "recording_enabled"),
        caller_id_prefix=optional(settings, "caller_id_prefix"),
        caller_id_passthrough=optional(settings, "caller_id_passthrough"),
        context=CONTEXT.name(context, "settings.context") if context is not None else None,
        messaging_webhook=optional(settings, "messaging_webhook"),
    )


def number_update(request: pb.UpdateNumberRequest) -> tuple[dict[str, str | None], Routing | None, Settings]:
    """UpdateNumber's changes: (name and provider_ref, each None when left alone), the new routing
    (NO_ROUTING clears it; None leaves it), and the settings (None fields left alone; a context
    cleared is the default, INCOMING)."""
    changes = changed_fields(request, UPDATE_NUMBER_FIELDS)
    fields = {name: getattr(request, name) if name in changes else None for name in ("name", "provider_ref")}
    routing = (routing_from(request) or NO_ROUTING) if changes.intersection(ROUTING_FIELDS) else None
    s = request.settings
    settings = Settings(
        recording_enabled=s.recording_enabled if "settings.recording_enabled" in changes else None,
        caller_id_prefix=s.caller_id_prefix if "settings.caller_id_prefix" in changes else None,
        caller_id_passthrough=s.caller_id_passthrough if "settings.caller_id_passthrough" in changes else None,
        context=(CONTEXT.name(s.context, "settings.context") if s.context else "INCOMING")
        if "settings.context" in changes else None,
        messaging_webhook=s.messaging_webhook if "settings.messaging_webhook" in changes else None,
    )
    return fields, routing, settings


# Numbers share a few dozen classifications; a message each is copied into every Number that has it.
@functools.lru_cache(maxsize=1024)
def classification_message(found: catalog.Classification) -> pb.Classification:
    return pb.Classification(
        type=NUMBER_TYPE.number(found.type),
        region_code=found.region_code,
        country_code=found.country_code,
        international=found.international,
        classifiers=found.classifiers,
    )


def subscriber_proto(subscriber: Subscriber | None) -> pb.Subscriber:
    if subscriber is None:
        return pb.Subscriber(status=pb.SUBSCRIBER_STATUS_UNSPECIFIED)
    return pb.Subscriber(
        first_name=subscriber.first_name,
        name=subscriber.name,
        address1=subscriber.address1,
        address2=subscriber.address2,
        address3=subscriber.address3,
        address4=subscriber.address4,
        postcode=subscriber.postcode,
        status=SUBSCRIBER_STATUS.number(subscriber.status),
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
        status=EMERGENCY_ADDRESS_STATUS.number(address.status),
        problems=address.problems,
    )


def basic_number_proto(number: Number) -> pb.Number:
    """A Number in NUMBER_VIEW_BASIC."""
    return pb.Number(ref=number.ref, e164_number=number.e164_number, state=STATE.number(number.state),
                     etag=number.etag)


_RELATIONS = object()  # number_proto's default: read the subscriber and address off the ORM object


def number_proto(number: Number | Any, subscriber: Subscriber | Any = _RELATIONS,
                 address: EmergencyAddress | Any = _RELATIONS) -> pb.Number:
    """A Number in NUMBER_VIEW_FULL: an ORM Number, or a row of a ListNumbers page with its subscriber
    and emergency address rows (None: it has none)."""
    if subscriber is _RELATIONS:
        subscriber = number.subscriber
    if address is _RELATIONS:
        address = number.emergency_address
    message = pb.Number(
        ref=number.ref,
        name=number.name,
        provider_ref=number.provider_ref,
        e164_number=number.e164_number,
        create_time=timestamp(number.create_time),
        update_time=timestamp(number.update_time),
        etag=etag_of(number.ref, number.version),
        state=STATE.number(number.state),
        classification=classification_message(catalog.classification(number.e164_number)),
        recording_enabled=number.recording_enabled,
        caller_id_prefix=number.caller_id_prefix,
        caller_id_passthrough=number.caller_id_passthrough,
        context=CONTEXT.number(number.context),
        subscriber=subscriber_proto(subscriber),
        emergency_enabled=number.emergency_enabled,
        from_inventory=number.from_inventory,
        messaging_webhook=number.messaging_webhook,
    )
    if number.reserve_expire_time and number.state == "RESERVED":
        message.reserve_expire_time.CopyFrom(timestamp(number.reserve_expire_time))
    if number.release_time and number.state == "RELEASED":
        message.release_time.CopyFrom(timestamp(number.release_time))
    if address is not None:
        message.emergency_address.CopyFrom(emergency_address_proto(address))
    set_routing(message, routing_of(number))
    return message


def subscriber_details(request: pb.UpdateSubscriberRequest) -> rules.SubscriberDetails:
    """The fields UpdateSubscriber changes; None for those it leaves alone."""
    changes = changed_fields(request, UPDATE_SUBSCRIBER_FIELDS)
    return rules.SubscriberDetails(
        **{name: getattr(request, name) if name in changes else None for name in UPDATE_SUBSCRIBER_FIELDS}
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
