"""Calls' recordings: stored as the network reports them (gateway.Recording), read back by GetCallRecording."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..core import config
from ..core.auth import Caller
from ..core.errors import NotFound
from ..core.resources import get_owned
from .gateway import Recording
from .models import Call, CallRecording

CONTENT_TYPE = "audio/wav"


def store(session: Session, recording: Recording) -> bool:
    """Stores (or replaces) the recording of its call; False when the call is gone (deleted meanwhile)."""
    call_id = session.scalar(select(Call.id).where(Call.ref == recording.ref))
    if call_id is None:
        return False
    session.execute(delete(CallRecording).where(CallRecording.call_id == call_id))
    session.add(CallRecording(
        call_id=call_id, content_type=CONTENT_TYPE, duration_ms=recording.duration_ms, channels=recording.channels,
        sample_rate=recording.sample_rate, data=recording.wav, update_time=recording.time,
    ))
    return True


def recording_of(session: Session, caller: Caller, ref: str) -> CallRecording:
    """The recording of the caller's call `ref` (NOT_FOUND for no such call, or none recorded)."""
    call = get_owned(session, Call, caller, ref)
    found = session.get(CallRecording, call.id)
    if found is None:
        why = ("this server's network is the simulated one, which records no audio"
               if config.settings().call_gateway == "simulated" else
               "it was not recorded, or its recording is still running (it is stored when recording stops)")
        raise NotFound(f"Call {ref} has no recording: {why}.")
    return found
