"""Webhooks and AsyncWebhooks: the Webhooks service's RPCs (signing secrets, settings, endpoints,
deliveries). Receivers verify what it delivers with `voxplane.webhooks.verify`."""

from __future__ import annotations

from ._client import AsyncClient, Method, Pages, SyncClient
from .webhooks.v1 import webhooks_pb2 as pb
from .webhooks.v1 import webhooks_pb2_grpc


class _WebhooksMethods:
    stub_type = webhooks_pb2_grpc.WebhooksStub

    create_signing_secret = Method("CreateSigningSecret", pb.CreateSigningSecretRequest)
    rotate_signing_secret = Method("RotateSigningSecret", pb.RotateSigningSecretRequest)
    get_signing_secret = Method("GetSigningSecret", pb.GetSigningSecretRequest)
    get_webhook_settings = Method("GetWebhookSettings", pb.GetWebhookSettingsRequest)
    update_webhook_settings = Method("UpdateWebhookSettings", pb.UpdateWebhookSettingsRequest)
    clear_webhook_settings = Method("ClearWebhookSettings", pb.ClearWebhookSettingsRequest)
    list_webhook_endpoints = Method("ListWebhookEndpoints", pb.ListWebhookEndpointsRequest)
    update_webhook_endpoint = Method("UpdateWebhookEndpoint", pb.UpdateWebhookEndpointRequest)
    list_webhook_deliveries = Method("ListWebhookDeliveries", pb.ListWebhookDeliveriesRequest)
    retry_webhook_delivery = Method("RetryWebhookDelivery", pb.RetryWebhookDeliveryRequest, positional="ref")
    retry_webhook_deliveries = Method("RetryWebhookDeliveries", pb.RetryWebhookDeliveriesRequest)
    iter_webhook_endpoints = Pages("list_webhook_endpoints", "endpoints")
    iter_webhook_deliveries = Pages("list_webhook_deliveries", "deliveries")


class Webhooks(_WebhooksMethods, SyncClient):
    """Blocking client of the Webhooks service.

    >>> webhooks = Webhooks(endpoint="127.0.0.1:50051", api_key="vxp_...")
    >>> secret = webhooks.create_signing_secret().secret  # shown this once
    >>> webhooks.update_webhook_settings(incoming_url="https://example.com/hooks/voice")
    """


class AsyncWebhooks(_WebhooksMethods, AsyncClient):
    """asyncio client of the Webhooks service: the same methods, awaited."""
