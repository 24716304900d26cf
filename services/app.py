"""The services this deployment can host, by the name `voxplane serve` takes."""

from __future__ import annotations

from voxplane.agents.v1 import agents_pb2_grpc
from voxplane.calls.v1 import calls_pb2_grpc
from voxplane.messaging.v1 import messaging_pb2_grpc
from voxplane.numbers.v1 import numbers_pb2_grpc
from voxplane.webhooks.v1 import webhooks_pb2_grpc

from .agents.servicer import AgentsServicer
from .calls.runner import Runner
from .calls.servicer import CallsServicer
from .core.server import Server, Service, TlsFiles
from .messaging.runner import Runner as MessagingRunner
from .messaging.servicer import MessagingServicer
from .numbers.servicer import NumbersServicer
from .persistence.db import Database
from .webhooks.runner import DeliveryWorker
from .webhooks.servicer import WebhooksServicer

SERVICES: dict[str, Service] = {
    "numbers": Service(NumbersServicer, numbers_pb2_grpc.add_NumbersServicer_to_server),
    "agents": Service(AgentsServicer, agents_pb2_grpc.add_AgentsServicer_to_server),
    "calls": Service(CallsServicer, calls_pb2_grpc.add_CallsServicer_to_server, runtime=Runner),
    "webhooks": Service(WebhooksServicer, webhooks_pb2_grpc.add_WebhooksServicer_to_server, runtime=DeliveryWorker),
    "messaging": Service(MessagingServicer, messaging_pb2_grpc.add_MessagingServicer_to_server,
                         runtime=MessagingRunner),
}


def build_server(names: list[str], db: Database, tls: TlsFiles | None = None, *, shared_port: bool = False) -> Server:
    """A server hosting the named services (`all` for every one); `shared_port` for a worker of several."""
    if names == ["all"]:
        names = list(SERVICES)
    return Server([SERVICES[name] for name in names], db, tls=tls, shared_port=shared_port)
