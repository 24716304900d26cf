"""The SIP dialogs of live calls, kept in the database so that a gateway killed outright (`kill -9`) can
still end its calls on the network when it starts again: a BYE on each leg, built from what is stored.

Each row is one leg's dialog, keyed by the gateway's SIP address (host:port, so each `--workers` worker
and each replica cleans up only its own), the call's ref (also its id at rtpengine) and the leg. The
gateway writes it once the leg is established (and again when a re-INVITE of ours moved its CSeq on),
and deletes the call's rows when the call ends. `dialog_of` and `bye_for` run on sippy's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .models import SipDialog


def keep(session: Session, dialog: SipDialog) -> None:
    """Stores a leg's dialog, or updates the one stored."""
    session.merge(dialog)


def forget(session: Session, gateway: str, call_ref: str) -> None:
    """Deletes the dialogs of a call that ended."""
    session.execute(delete(SipDialog).where(SipDialog.gateway == gateway, SipDialog.call_ref == call_ref))


def left_by(session: Session, gateway: str) -> Sequence[SipDialog]:
    """The dialogs a previous run of the gateway at `gateway` left behind: it was killed with them up."""
    return session.scalars(select(SipDialog).where(SipDialog.gateway == gateway)).all()


def dialog_of(ua: Any, gateway: str, call_ref: str, leg: str) -> SipDialog:
    """The dialog of an established sippy UA, as sippy's own next in-dialog request would use it
    (`UA.genRequest`). On sippy's thread."""
    host, port = ua.outbound_proxy if ua.outbound_proxy is not None else ua.rAddr[0]  # rAddr: (address, transport)
    return SipDialog(
        gateway=gateway, call_ref=call_ref, leg=leg, call_id=str(ua.cId),
        local_uri=str(ua.lUri.getUrl()), local_tag=ua.lUri.getTag() or "",
        remote_uri=str(ua.rUri.getUrl()), remote_tag=ua.rUri.getTag() or "",
        remote_target=str(ua.rTarget), route_set=[str(route) for route in ua.routes],
        next_hop=f"{host}:{port}", contact=str(ua.lContact), cseq=ua.lCSeq,
    )


def bye_for(dialog: SipDialog) -> Any:
    """A sippy BYE request in `dialog`, addressed to its next hop. On sippy's thread."""
    from sippy.SipAddress import SipAddress
    from sippy.SipCallId import SipCallId
    from sippy.SipConf import SipConf
    from sippy.SipContact import SipContact
    from sippy.SipFrom import SipFrom
    from sippy.SipRequest import SipRequest
    from sippy.SipRoute import SipRoute
    from sippy.SipTo import SipTo
    from sippy.SipURL import SipURL

    local = SipFrom(address=SipAddress(url=SipURL(dialog.local_uri)))
    local.setTag(dialog.local_tag)
    remote = SipTo(address=SipAddress(url=SipURL(dialog.remote_uri)))
    if dialog.remote_tag:
        remote.setTag(dialog.remote_tag)
    host, _, port = dialog.next_hop.rpartition(":")
    return SipRequest(
        method="BYE", ruri=SipURL(dialog.remote_target), to=remote, fr0m=local, cseq=dialog.cseq,
        callid=SipCallId(dialog.call_id), contact=SipContact(dialog.contact),
        routes=[SipRoute(route) for route in dialog.route_set], target=((host, int(port)), SipConf.my_transport),
    )
