"""The conversions every service's messages module uses, and the UTC-aware time column under them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.services.core.convert import ProtoEnum, timestamp
from voxplane.services.core.errors import InvalidArgument, Violations
from voxplane.services.persistence.tenancy import Workspace

UTC = timezone.utc
TIMES = [
    datetime(2026, 11, 25, 13, 5, 7, 123456, tzinfo=UTC),
    datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("value", TIMES, ids=str)
def test_timestamp_is_what_protobuf_makes_of_the_time(value):
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


def test_stored_times_come_back_utc_aware_on_every_backend(db):
    """SQLite keeps the digits alone: the column type makes them UTC-aware again, and stores another
    zone's time as its UTC instant."""
    written = datetime(2026, 6, 1, 14, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    name = f"tz-{written.timestamp()}-{id(db)}"
    db.transaction(lambda s: s.add(Workspace(name=name, create_time=written)), write=True)
    read = db.transaction(lambda s: s.scalar(select(Workspace.create_time).where(Workspace.name == name)),
                          write=False)
    assert read.utcoffset() == timedelta(0) and read == written
    later = db.transaction(
        lambda s: s.scalar(select(Workspace.name).where(Workspace.name == name,
                                                        Workspace.create_time > written - timedelta(seconds=1))),
        write=False,
    )
    assert later == name  # compared as instants too


STATE = ProtoEnum(pb.NumberState)


def test_proto_enum_names_values_both_ways_without_their_prefix():
    assert STATE.number("ACTIVE") == pb.NUMBER_STATE_ACTIVE and STATE.number(None) == 0
    assert STATE.name(pb.NUMBER_STATE_RELEASED, "state") == "RELEASED"
    assert STATE.name(0, "state") == "UNSPECIFIED"
    for name, number in pb.NumberState.items():
        assert STATE.number(STATE.name(number, "state")) == number, name


def test_a_value_the_contract_lacks_is_invalid_raised_or_collected():
    with pytest.raises(InvalidArgument) as caught:
        STATE.name(99, "filter.state")
    assert [(f.field, f.description) for f in caught.value.violations] == [
        ("filter.state", "99 is not a value of NumberState")
    ]
    v = Violations()
    assert STATE.name(99, "state", v) == "" and v
