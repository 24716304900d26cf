"""The number lifecycle: one table decides every state change.

    RESERVED ──activate──> ACTIVE <──activate── SUSPENDED, PORTING_IN
    ACTIVE ──suspend──> SUSPENDED
    RESERVED, ACTIVE, SUSPENDED, PORTING_IN ──release──> RELEASED

A RELEASED number ages for the deployment's aging period, then its row is
dead (see provisioning.dead): an inventory number is available again and
any number can be created anew. A RESERVED number whose reservation lapsed
is dead the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from ..core.auth import Caller
from ..core.errors import FailedPrecondition
from ..persistence.base import utcnow
from .models import Number
from .provisioning import get_number


@dataclass(frozen=True)
class Transition:
    verb: str
    done: str
    allowed_from: tuple[str, ...]
    to: str


ACTIVATE = Transition("activate", "activated", ("RESERVED", "SUSPENDED", "PORTING_IN"), "ACTIVE")
SUSPEND = Transition("suspend", "suspended", ("ACTIVE",), "SUSPENDED")
RELEASE = Transition("release", "released", ("RESERVED", "ACTIVE", "SUSPENDED", "PORTING_IN"), "RELEASED")


def apply(number: Number, transition: Transition) -> None:
    """Moves `number` through `transition`, or refuses naming its current state."""
    if number.state not in transition.allowed_from:
        allowed = ", ".join(transition.allowed_from)
        raise FailedPrecondition(
            f"Cannot {transition.verb} number {number.e164_number}: it is {number.state}, "
            f"and only {allowed} numbers can be {transition.done}."
        )
    now = utcnow()
    number.state = transition.to
    number.reserve_expire_time = None
    number.release_time = now if transition.to == "RELEASED" else None
    if transition.to == "RELEASED":
        number.emergency_enabled = False
    number.update_time = now


def change_state(session: Session, caller: Caller, ref: str, etag: str, transition: Transition) -> Number:
    number = get_number(session, caller, ref, etag)
    apply(number, transition)
    session.flush()
    return number
