"""Field checks: the feed IMEI, dates, enums and booleans."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.errors import FeedRowError
from ceir.feeds.rows import (
    RejectReason,
    day_number,
    fast_check_digit,
    feed_body,
    iso_day,
    parse_bool,
    parse_choice,
    parse_feed_imei,
    parse_instant,
)
from ceir.feeds.summary import Reject
from ceir.imei import check_digit, parse

bodies = st.integers(0, 10**14 - 1).map(lambda n: f"{n:014d}")


@given(bodies)
def test_fast_check_digit_agrees_with_imei_module(body: str) -> None:
    """The bulk Luhn gives the same digit as ceir.imei.check_digit for every body."""
    assert fast_check_digit(body) == check_digit(body)


@given(bodies, st.integers(0, 9))
def test_feed_imei_accepts_exactly_the_valid_15_digit_forms(body: str, cd: int) -> None:
    """15 digits pass iff the check digit is right, and give the same body as ceir.imei."""
    text = f"{body}{cd}"
    if cd == check_digit(body):
        assert parse_feed_imei(text).body == feed_body(text) == parse(text).body == body
    else:
        with pytest.raises(FeedRowError) as info:
            feed_body(text)
        assert info.value.reason is RejectReason.BAD_IMEI


@given(bodies)
def test_feed_imei_accepts_14_digits(body: str) -> None:
    """A 14-digit body is accepted as is."""
    assert feed_body(body) == body


def test_date_only_means_that_day_in_wib() -> None:
    """A date is midnight UTC+7; as an until-date it is the next midnight."""
    start = parse_instant("2024-03-01", "d")
    assert start == int(datetime(2024, 2, 29, 17, tzinfo=UTC).timestamp())
    assert parse_instant("2024-03-01", "d", end_of_day=True) == start + 86_400
    assert iso_day(start) == "2024-03-01"
    assert day_number(start) == day_number(start + 86_399) == day_number(start + 86_400) - 1


def test_date_time_needs_an_offset() -> None:
    """A date-time without an offset is rejected with the +07:00 fix."""
    assert parse_instant("2024-03-01T10:00:00Z", "d") == parse_instant(
        "2024-03-01T17:00:00+07:00", "d"
    )
    with pytest.raises(FeedRowError) as info:
        parse_instant("2024-03-01T10:00:00", "d")
    assert info.value.fix == "2024-03-01T10:00:00+07:00"


@pytest.mark.parametrize(
    ("text", "fix"), [("31/12/2024", "2024-12-31"), ("01/02/2024", ""), ("yesterday", "")]
)
def test_non_iso_dates_get_a_fix_only_when_unambiguous(text: str, fix: str) -> None:
    """DD/MM/YYYY is fixed only when the day cannot be a month."""
    with pytest.raises(FeedRowError) as info:
        parse_instant(text, "d")
    assert (info.value.reason, info.value.fix) == (RejectReason.BAD_DATE, fix)


def test_choices_and_booleans_are_exact() -> None:
    """Enums and booleans must be written exactly; the fix says how."""
    assert parse_choice("NIK", "id_type", ("NIK", "PASSPORT")) == "NIK"
    with pytest.raises(FeedRowError) as info:
        parse_choice(" nik", "id_type", ("NIK", "PASSPORT"))
    assert info.value.fix == "NIK"
    assert parse_bool("false", "tax_paid") is False
    with pytest.raises(FeedRowError) as info:
        parse_bool("Yes", "tax_paid")
    assert info.value.fix == "true"
    with pytest.raises(FeedRowError) as info:
        parse_bool("", "tax_paid")
    assert info.value.reason is RejectReason.MISSING_FIELD


def test_malformed_reasons_are_the_data_quality_ones() -> None:
    """Rule outcomes do not count toward the bad-row limit; data-quality problems do."""
    rules = {r for r in RejectReason if not r.malformed}
    assert rules == {
        RejectReason.CONFLICT,
        RejectReason.QUOTA,
        RejectReason.COOLDOWN,
        RejectReason.NOT_ELIGIBLE,
        RejectReason.TOO_LONG,
        RejectReason.NOT_BLOCKED,
        RejectReason.NOT_OWNER,
    }


@given(st.builds(Reject, st.integers(0, 10**9), st.text(), st.text(), st.text(), st.text()))
def test_a_reject_as_stored_has_every_field(reject: Reject) -> None:
    """``to_dict`` (what the rejects table keeps) is the dataclass's own field mapping."""
    import dataclasses

    assert reject.to_dict() == dataclasses.asdict(reject)
    assert Reject(**reject.to_dict()) == reject
