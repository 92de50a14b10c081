"""ceir.record: the enums match the proto, and the 12-byte record codec round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.record import (
    RECORD_SIZE,
    Reason,
    Record,
    Source,
    Status,
    unpack_header,
)
from ceir.v1 import common_pb2

u32 = st.integers(0, 2**32 - 1)
records = st.builds(
    Record,
    reason=st.sampled_from(Reason),
    source=st.sampled_from(Source),
    lost_stolen=st.booleans(),
    registered_at=u32,
    expires_at=u32,
)


@given(records)
def test_pack_unpack_round_trip(record: Record) -> None:
    """Record.unpack(record.pack()) == record, and every packed record is 12 bytes."""
    packed = record.pack()
    assert len(packed) == RECORD_SIZE == 12
    assert Record.unpack(packed) == record


@given(records)
def test_unpack_header_matches_unpack(record: Record) -> None:
    """The lookup path's fast header decode agrees with the full decode."""
    reason, source, flags, expires_at = unpack_header(record.pack())
    assert (reason, source, bool(flags & 1), expires_at) == (
        record.reason,
        record.source,
        record.lost_stolen,
        record.expires_at,
    )


@pytest.mark.parametrize(
    ("enum", "proto", "prefix"),
    [
        (Status, common_pb2.EquipmentStatus, "EQUIPMENT_STATUS_"),
        (Reason, common_pb2.Reason, "REASON_"),
        (Source, common_pb2.Source, "SOURCE_"),
    ],
)
def test_enums_match_proto_numbers(enum: type, proto: object, prefix: str) -> None:
    """Every Python enum member has the number of the proto value of the same name."""
    for member in enum:  # type: ignore[attr-defined]
        name = "UNSPECIFIED" if member.name == "NONE" else member.name
        assert proto.Value(prefix + name) == member.value  # type: ignore[attr-defined]


def test_status_3gpp_values() -> None:
    """whiteListed 0, blackListed 1, greyListed 2 as TS 29.002 and TS 29.272 number them."""
    assert [s.gpp_value for s in (Status.WHITELISTED, Status.BLACKLISTED, Status.GREYLISTED)] == [
        0,
        1,
        2,
    ]


def test_with_block_keeps_the_registration() -> None:
    """Block and unblock toggle only the flag: a found phone gets its registration back."""
    record = Record(Reason.REGISTERED, Source.CUSTOMS, registered_at=5)
    blocked = record.with_block(blocked=True)
    assert blocked.lost_stolen
    assert blocked.registered
    assert blocked.with_block(blocked=False) == record
    assert not Record(lost_stolen=True).registered
