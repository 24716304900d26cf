"""The proto conversions every servicer uses, at unit level."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from voxplane.services.core.convert import timestamp

TIMES = [
    datetime(2026, 11, 25, 13, 5, 7, 123456, tzinfo=timezone.utc),
    datetime(2026, 11, 25, 13, 5, 7, 123456),  # naive, as SQLite hands it back: UTC
    datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
]


@pytest.mark.parametrize("value", TIMES, ids=str)
def test_timestamp_is_what_protobuf_makes_of_the_utc_time(value):
    expected = Timestamp()
    expected.FromDatetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    assert timestamp(value) == expected
