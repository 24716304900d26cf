"""Webhooks over gRPC: proto in, rules, proto out. A signing secret goes out once, when it is made."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from voxplane.webhooks.v1 import webhooks_pb2 as pb
from voxplane.webhooks.v1 import webhooks_pb2_grpc

from ..core.auth import Access, Caller
from ..core.errors import InvalidArgument
from ..core.metrics import Reading
from ..core.paging import PageTokens
from ..core.rpc import rpc
from ..core.servicer import Servicer
from ..persistence.db import Database
from . import deliveries, dispatch, endpoints, settings, signing_keys, steerings
from .messages import (
    delivery_filter,
    delivery_proto,
    endpoint_proto,
    endpoint_update,
    retry_failed_request,
    settings_proto,
    settings_update,
    signing_secret_proto,
)
from .runner import DeliveryWorker


class WebhooksServicer(Servicer, webhooks_pb2_grpc.WebhooksServicer):
    service_name = pb.DESCRIPTOR.services_by_name["Webhooks"].full_name

    def __init__(self, db: Database, tokens: PageTokens, worker: DeliveryWorker):
        super().__init__(db, tokens)
        # The delivery worker runs beside the RPCs (the server starts and stops it); they share only
        # the database: a retried delivery is found by any replica's worker.
        self.worker = worker

    def metrics(self) -> Sequence[Reading]:
        return [dispatch.outbox_lag]

    @rpc(Access.WRITE)
    def CreateSigningSecret(self, request: pb.CreateSigningSecretRequest, caller: Caller, session: Session) -> pb.SigningSecret:
        return signing_secret_proto(signing_keys.create(session, caller.workspace_id))

    @rpc(Access.WRITE)
    def RotateSigningSecret(self, request: pb.RotateSigningSecretRequest, caller: Caller, session: Session) -> pb.SigningSecret:
        return signing_secret_proto(signing_keys.rotate(session, caller.workspace_id))

    @rpc(Access.READ)
    def GetSigningSecret(self, request: pb.GetSigningSecretRequest, caller: Caller, session: Session) -> pb.SigningSecret:
        return signing_secret_proto(signing_keys.describe(session, caller.workspace_id))

    @rpc(Access.READ)
    def GetWebhookSettings(self, request: pb.GetWebhookSettingsRequest, caller: Caller, session: Session) -> pb.WebhookSettings:
        return settings_proto(settings.get(session, caller.workspace_id))

    @rpc(Access.WRITE)
    def UpdateWebhookSettings(
        self, request: pb.UpdateWebhookSettingsRequest, caller: Caller, session: Session
    ) -> pb.WebhookSettings:
        changes, fields = settings_update(request)
        return settings_proto(settings.update(session, caller.workspace_id, changes, fields))

    @rpc(Access.WRITE)
    def ClearWebhookSettings(self, request: pb.ClearWebhookSettingsRequest, caller: Caller, session: Session) -> pb.WebhookSettings:
        return settings_proto(settings.clear(session, caller.workspace_id))

    @rpc(Access.READ)
    def ListWebhookEndpoints(
        self, request: pb.ListWebhookEndpointsRequest, caller: Caller, session: Session
    ) -> pb.ListWebhookEndpointsResponse:
        found, next_token = self.tokens.page(
            f"webhook-endpoints/{caller.workspace_id}", request,
            lambda after, size: endpoints.list_endpoints(session, caller.workspace_id, after, size), key=str,
        )
        return pb.ListWebhookEndpointsResponse(endpoints=[endpoint_proto(e) for e in found], next_page_token=next_token)

    @rpc(Access.WRITE)
    def UpdateWebhookEndpoint(self, request: pb.UpdateWebhookEndpointRequest, caller: Caller, session: Session) -> pb.WebhookEndpoint:
        url, enabled, payload_format = endpoint_update(request)
        return endpoint_proto(endpoints.update_endpoint(
            session, caller.workspace_id, url, enabled=enabled, payload_format=payload_format
        ))

    @rpc(Access.READ)
    def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, caller: Caller, session: Session
    ) -> pb.ListWebhookDeliveriesResponse:
        where = delivery_filter(request)
        found, next_token = self.tokens.page(
            f"webhook-deliveries/{caller.workspace_id}/{where.scope}", request,
            lambda after, size: deliveries.list_deliveries(session, caller.workspace_id, where, after, size),
        )
        steered = steerings.steerings_of(session, found)
        return pb.ListWebhookDeliveriesResponse(
            deliveries=[delivery_proto(d, steered.get((d.event_row_id, d.url))) for d in found], next_page_token=next_token
        )

    @rpc(Access.WRITE)
    def RetryWebhookDelivery(self, request: pb.RetryWebhookDeliveryRequest, caller: Caller, session: Session) -> pb.WebhookDelivery:
        if not request.ref.strip():
            raise InvalidArgument.of("ref", "is required")
        delivery = deliveries.retry_one(session, caller.workspace_id, request.ref.strip())
        return delivery_proto(delivery, steerings.steerings_of(session, [delivery]).get((delivery.event_row_id, delivery.url)))

    @rpc(Access.WRITE)
    def RetryWebhookDeliveries(
        self, request: pb.RetryWebhookDeliveriesRequest, caller: Caller, session: Session
    ) -> pb.RetryWebhookDeliveriesResponse:
        since, url = retry_failed_request(request)
        return pb.RetryWebhookDeliveriesResponse(count=deliveries.retry_failed(session, caller.workspace_id, since, url))
