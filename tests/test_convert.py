"""The conversions every service's messages module uses, and the UTC-aware time column under them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.services.core.convert import ProtoEnum, changed_fields, time_of, timedelta_of, timestamp
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


# --- reading a Timestamp or Duration from a request -------------------------------------------------------

@pytest.mark.parametrize("seconds, nanos", [(253402300800, 0), (-62135596801, 0), (0, -1), (0, 1_000_000_000),
                                            (2**63 - 1, 0)])
def test_an_out_of_range_timestamp_is_invalid_argument_on_its_field(seconds, nanos):
    request = pb.NumberFilter(created_after=Timestamp(seconds=seconds, nanos=nanos))
    v = Violations()
    assert time_of(request, "created_after", v, "filter.created_after") is None
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_any()
    assert [x.field for x in caught.value.violations] == ["filter.created_after"]


def test_a_timestamp_in_range_is_read_utc_aware_and_an_unset_one_is_none():
    v = Violations()
    request = pb.NumberFilter(created_after=Timestamp(seconds=253402300799, nanos=999_999_999))
    assert time_of(request, "created_after", v) == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert time_of(pb.NumberFilter(), "created_after", v) is None
    assert not v


@pytest.mark.parametrize("seconds, nanos", [(100000000000000, 0), (-(2**63), 0), (1, -5), (0, 1_000_000_000)])
def test_an_out_of_range_duration_is_invalid_argument_on_its_field(seconds, nanos):
    v = Violations()
    assert timedelta_of(pb.ReserveNumberRequest(hold=Duration(seconds=seconds, nanos=nanos)), "hold", v) is None
    assert v


def test_a_duration_in_range_is_read():
    v = Violations()
    assert timedelta_of(pb.ReserveNumberRequest(hold=Duration(seconds=90, nanos=5000)), "hold", v) == timedelta(
        seconds=90, microseconds=5)
    assert timedelta_of(pb.ReserveNumberRequest(), "hold", v) is None
    assert not v


def test_an_update_without_mask_that_sets_a_message_names_its_fields():
    """Found by the fuzzer: reading `label`, gone from protobuf 7's descriptors, was INTERNAL."""
    request = pb.UpdateNumberRequest(ref="r", settings=pb.NumberSettings(recording_enabled=True))
    assert changed_fields(request, ("settings", "settings.recording_enabled")) == {
        "settings", "settings.recording_enabled"}
