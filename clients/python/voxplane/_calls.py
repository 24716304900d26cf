"""Calls and AsyncCalls: the Calls service's RPCs, as in the Fonoster SDK."""

from __future__ import annotations

from ._client import AsyncClient, Method, Pages, SyncClient
from ._export import AsyncCallExport, CallExport
from ._recording import AsyncCallRecordings, CallRecordings
from ._watch import AsyncCallWatch, CallWatch
from .calls.v1 import calls_pb2 as pb
from .calls.v1 import calls_pb2_grpc


class _CallsMethods:
    stub_type = calls_pb2_grpc.CallsStub

    get_call = Method("GetCall", pb.GetCallRequest, positional="ref")
    list_active_calls = Method("ListActiveCalls", pb.ListActiveCallsRequest)

    hangup_call = Method("HangupCall", pb.HangupCallRequest, positional="ref")
    cancel_call = Method("CancelCall", pb.CancelCallRequest, positional="ref")
    mute_call = Method("MuteCall", pb.MuteCallRequest, positional="ref")
    hold_call = Method("HoldCall", pb.HoldCallRequest, positional="ref")
    record_call = Method("RecordCall", pb.RecordCallRequest, positional="ref")
    play_audio = Method("PlayAudio", pb.PlayAudioRequest, positional="ref")
    transfer_call = Method("TransferCall", pb.TransferCallRequest, positional="ref")
    send_dtmf = Method("SendDtmf", pb.SendDtmfRequest, positional="ref")
    redirect_call = Method("RedirectCall", pb.RedirectCallRequest, positional="ref")
    simulate_inbound_call = Method("SimulateInboundCall", pb.SimulateInboundCallRequest)
    get_call_settings = Method("GetCallSettings", pb.GetCallSettingsRequest)
    update_call_settings = Method("UpdateCallSettings", pb.UpdateCallSettingsRequest)

    list_calls = Method("ListCalls", pb.ListCallsRequest)
    update_call_record = Method("UpdateCallRecord", pb.UpdateCallRecordRequest)
    batch_update_call_records = Method("BatchUpdateCallRecords", pb.BatchUpdateCallRecordsRequest)
    delete_call_records = Method("DeleteCallRecords", pb.DeleteCallRecordsRequest)
    iter_calls = Pages("list_calls", "calls")


class Calls(CallWatch, CallExport, CallRecordings, _CallsMethods, SyncClient):
    """Blocking client of the Calls service.

    >>> calls = Calls(endpoint="127.0.0.1:50051", api_key="vxp_...")
    >>> call = calls.create_call(source="<agent ref>", destination="+15005550001")
    >>> calls.get_call(call.ref).status  # QUEUED, then RINGING, IN_PROGRESS...
    >>> call, events = calls.create_call(source="<agent ref>", destination="+15005550001", track=True)
    >>> for response in events: ...  # NEW_CALL, RINGING, ANSWER... each with its cursor
    """


class AsyncCalls(AsyncCallWatch, AsyncCallExport, AsyncCallRecordings, _CallsMethods, AsyncClient):
    """asyncio client of the Calls service: the same methods, awaited."""
