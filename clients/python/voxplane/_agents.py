"""Agents and AsyncAgents: the Agents service's RPCs, as in the Fonoster SDK."""

from __future__ import annotations

from ._client import AsyncClient, Method, Pages, SyncClient
from .agents.v1 import agents_pb2 as pb
from .agents.v1 import agents_pb2_grpc


class _AgentsMethods:
    stub_type = agents_pb2_grpc.AgentsStub

    create_agent = Method("CreateAgent", pb.CreateAgentRequest)
    get_agent = Method("GetAgent", pb.GetAgentRequest, positional="ref")
    update_agent = Method("UpdateAgent", pb.UpdateAgentRequest)
    list_agents = Method("ListAgents", pb.ListAgentsRequest)
    delete_agent = Method("DeleteAgent", pb.DeleteAgentRequest, positional="ref")
    find_agent_by_address = Method("FindAgentByAddress", pb.FindAgentByAddressRequest)
    iter_agents = Pages("list_agents", "agents")


class Agents(_AgentsMethods, SyncClient):
    """Blocking client of the Agents service.

    >>> agents = Agents(endpoint="127.0.0.1:50051", api_key="vxp_...")
    >>> agent = agents.create_agent(name="John Doe", username="john", secret="s3cret-pass",
    ...                             domains=["sip.local"])
    """


class AsyncAgents(_AgentsMethods, AsyncClient):
    """asyncio client of the Agents service: the same methods, awaited."""
