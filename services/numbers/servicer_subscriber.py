"""Numbers RPCs for the subscriber and the emergency address. (Being written.)"""

from __future__ import annotations

from typing import Any

from voxplane.numbers.v1 import numbers_pb2 as pb


def subscriber_proto(subscriber: Any) -> pb.Subscriber:
    return pb.Subscriber(status=pb.SUBSCRIBER_STATUS_UNKNOWN)


def emergency_address_proto(address: Any) -> pb.EmergencyAddress:
    return pb.EmergencyAddress()


class SubscriberRpcs:
    pass
