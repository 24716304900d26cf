"""Agents over gRPC: proto in, provisioning call, proto out. Secrets go in, never out."""

from __future__ import annotations

from sqlalchemy.orm import Session

from voxplane.agents.v1 import agents_pb2 as pb
from voxplane.agents.v1 import agents_pb2_grpc

from ..core.auth import Access, Caller
from ..core.convert import optional
from ..core.errors import Violations
from ..core.rpc import rpc
from ..core.servicer import Servicer
from . import provisioning
from .messages import PRIVACY, agent_proto, agent_update


class AgentsServicer(Servicer, agents_pb2_grpc.AgentsServicer):
    service_name = pb.DESCRIPTOR.services_by_name["Agents"].full_name

    @rpc(Access.WRITE)
    def CreateAgent(self, request: pb.CreateAgentRequest, caller: Caller, session: Session) -> pb.Agent:
        v = Violations()
        agent = provisioning.create_agent(
            session,
            caller,
            v,
            name=request.name,
            username=request.username,
            secret=request.secret,
            privacy=PRIVACY.name(request.privacy, "privacy", v),
            domains=list(request.domains),
            enabled=optional(request, "enabled"),
            request_id=request.request_id,
        )
        return agent_proto(agent)

    @rpc(Access.READ)
    def GetAgent(self, request: pb.GetAgentRequest, caller: Caller, session: Session) -> pb.Agent:
        return agent_proto(provisioning.get_agent(session, caller, request.ref))

    @rpc(Access.WRITE)
    def UpdateAgent(self, request: pb.UpdateAgentRequest, caller: Caller, session: Session) -> pb.Agent:
        v = Violations()
        agent = provisioning.update_agent(session, caller, v, request.ref, **agent_update(request, v), etag=request.etag)
        return agent_proto(agent)

    @rpc(Access.READ)
    def ListAgents(self, request: pb.ListAgentsRequest, caller: Caller, session: Session) -> pb.ListAgentsResponse:
        agents, next_token = self.tokens.page(
            f"agents/{caller.workspace_id}",
            request,
            lambda after, size: provisioning.list_agents(session, caller, after, size),
        )
        return pb.ListAgentsResponse(agents=[agent_proto(a) for a in agents], next_page_token=next_token)

    @rpc(Access.READ, exempt_services=True)  # Calls' service key, for every call an agent's phone places
    def FindAgentByAddress(
        self, request: pb.FindAgentByAddressRequest, caller: Caller, session: Session
    ) -> pb.FindAgentByAddressResponse:
        agent, workspace_ref = provisioning.agent_by_address(session, caller, request.username, request.domain)
        return pb.FindAgentByAddressResponse(agent=agent_proto(agent), workspace_ref=workspace_ref)

    @rpc(Access.WRITE)
    def DeleteAgent(self, request: pb.DeleteAgentRequest, caller: Caller, session: Session) -> pb.DeleteAgentResponse:
        provisioning.delete_agent(session, caller, request.ref, request.etag)
        return pb.DeleteAgentResponse()
