"""Webhooks' conversions between proto messages and the rules' objects. Secrets go out once, in the
responses of Create/RotateSigningSecret; nothing else carries them."""

from __future__ import annotations

from datetime import datetime

from voxplane.webhooks.v1 import webhooks_pb2 as pb

from ..core import validation
from ..core.convert import ProtoEnum, changed_fields, time_of, timestamp
from ..core.errors import Violations
from . import settings
from .deliveries import Filter
from .models import Delivery, Endpoint, Steering
from .signing_keys import Described

PAYLOAD_FORMAT = ProtoEnum(pb.PayloadFormat)
DELIVERY_STATUS = ProtoEnum(pb.DeliveryStatus)
STEERING_RESULT = ProtoEnum(pb.SteeringResult)
UPDATE_ENDPOINT_FIELDS = ("enabled", "payload_format")


def signing_secret_proto(described: Described) -> pb.SigningSecret:
    message = pb.SigningSecret(secret=described.secret, create_time=timestamp(described.create_time))
    if described.previous_expire_time is not None:
        message.previous_expire_time.CopyFrom(timestamp(described.previous_expire_time))
    return message


def settings_proto(shown: settings.Shown) -> pb.WebhookSettings:
    message = pb.WebhookSettings(
        incoming_url=shown.incoming_url, outgoing_url=shown.outgoing_url, whitelist=shown.whitelist,
        keep_delivery_log=shown.keep_delivery_log,
    )
    if shown.update_time is not None:
        message.update_time.CopyFrom(timestamp(shown.update_time))
    return message


def settings_update(request: pb.UpdateWebhookSettingsRequest) -> tuple[settings.Changes, frozenset[str]]:
    """The new values and the names of the settings UpdateWebhookSettings changes."""
    changes = settings.Changes(
        request.incoming_url, request.outgoing_url, list(request.whitelist), request.keep_delivery_log
    )
    return changes, changed_fields(request, settings.FIELDS)


def endpoint_proto(endpoint: Endpoint) -> pb.WebhookEndpoint:
    message = pb.WebhookEndpoint(
        url=endpoint.url, enabled=endpoint.enabled, disabled_reason=endpoint.disabled_reason,
        payload_format=PAYLOAD_FORMAT.number(endpoint.payload_format),
    )
    if endpoint.disable_time is not None:
        message.disable_time.CopyFrom(timestamp(endpoint.disable_time))
    return message


def endpoint_update(request: pb.UpdateWebhookEndpointRequest) -> tuple[str, bool | None, str | None]:
    """UpdateWebhookEndpoint's URL and changes (None: left alone); a bad URL or format is INVALID_ARGUMENT."""
    v = Violations()
    url = validation.http_url(v, "url", request.url) if request.url.strip() else None
    if not request.url.strip():
        v.add("url", "is required")
    changes = changed_fields(request, UPDATE_ENDPOINT_FIELDS)
    payload_format = PAYLOAD_FORMAT.name(request.payload_format, "payload_format", v) if "payload_format" in changes else None
    v.raise_if_any()
    assert url is not None
    if payload_format == "UNSPECIFIED":
        payload_format = "STANDARD"
    return url, request.enabled if "enabled" in changes else None, payload_format


def delivery_filter(request: pb.ListWebhookDeliveriesRequest) -> Filter:
    v = Violations()
    given = request.filter
    status = DELIVERY_STATUS.name(given.status, "filter.status", v)
    created_after = time_of(given, "created_after", v, "filter.created_after")
    v.raise_if_any()
    return Filter(
        None if status == "UNSPECIFIED" else status, given.event_id.strip(), given.resource_ref.strip(),
        given.url.strip(), created_after,
    )


def steering_proto(steering: Steering) -> pb.WebhookSteering:
    return pb.WebhookSteering(
        result=STEERING_RESULT.number(steering.result), instruction=steering.instruction, error=steering.error,
        response_code=steering.response_code, request_time=timestamp(steering.request_time),
        outcome_time=timestamp(steering.outcome_time),
    )


def delivery_proto(delivery: Delivery, steering: Steering | None = None) -> pb.WebhookDelivery:
    """The delivery, with what came of steering with its event (`steering`) if that was done."""
    message = pb.WebhookDelivery(
        ref=delivery.ref, event_id=delivery.event_id, event_type=delivery.event_type,
        resource_ref=delivery.resource_ref, url=delivery.url, status=DELIVERY_STATUS.number(delivery.status),
        attempts=delivery.attempts, last_error=delivery.last_error, last_response_code=delivery.last_response_code,
        create_time=timestamp(delivery.create_time),
    )
    if delivery.status == "PENDING" and delivery.next_attempt_time is not None:
        message.next_attempt_time.CopyFrom(timestamp(delivery.next_attempt_time))
    if delivery.deliver_time is not None:
        message.deliver_time.CopyFrom(timestamp(delivery.deliver_time))
    if steering is not None:
        message.steering.CopyFrom(steering_proto(steering))
    return message


def retry_failed_request(request: pb.RetryWebhookDeliveriesRequest) -> tuple[datetime, str]:
    """RetryWebhookDeliveries' `since` (required) and URL (empty: any)."""
    v = Violations()
    since = time_of(request, "since", v)
    if since is None and not request.HasField("since"):
        v.add("since", "is required: the FAILED deliveries created at or after it are retried")
    url = (validation.http_url(v, "url", request.url) or "") if request.url.strip() else ""
    v.raise_if_any()
    assert since is not None
    return since, url
