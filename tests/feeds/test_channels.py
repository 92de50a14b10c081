"""Operator dumps (cutoff), visitors (90 days, read-time expiry), exceptions, lost/stolen."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from ceir.feeds.rows import FEED_TZ
from ceir.imei import parse
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.record import Reason, Record, Source, Status
from ceir.store import Store
from ceir.v1 import eir_pb2

from .conftest import Importer, csv_text, imei

DUMP = "imei,imsi,msisdn,first_seen"
VISIT = "imei,passport_number,registered_at,valid_until"
EXCEPT = "imei,category,reference,valid_until"
LOST = "imei,report_ref,action,reported_at"
MAKER = "imei,brand,model,tpp_number,maker_id,produced_at"


def decide(store: Store, serial: int, now: float | None = None) -> tuple[Status, Reason, Source]:
    d = Policy().decide(store.get(parse(imei(serial)).key), time.time() if now is None else now)
    return d.status, d.reason, d.source


# -- operator dumps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_seen", "eligible"),
    [
        ("2020-09-15T22:00:00+07:00", True),
        ("2020-09-15T15:00:00+00:00", True),
        ("2020-09-15T22:00:01+07:00", False),
        ("2020-09-15", True),
        ("2020-09-16", False),
        ("2019-01-01", True),
    ],
)
def test_grandfathering_cutoff(
    store: Store, run: Importer, first_seen: str, eligible: bool
) -> None:
    """First seen at or before 2020-09-15T22:00+07:00: GRANDFATHERED; after: not eligible."""
    summary = run(
        "operator-dump", csv_text(DUMP, f"{imei(1)},510101234567890,+628111,{first_seen}")
    )
    if eligible:
        assert summary.added == 1
        assert decide(store, 1) == (Status.WHITELISTED, Reason.GRANDFATHERED, Source.OPERATOR)
    else:
        assert summary.rejected == {"not_eligible": 1}
        assert store.get(parse(imei(1)).key) is None


def test_cutoff_is_configurable(store: Store, run: Importer) -> None:
    """A later cutoff admits a later first_seen."""
    cutoff = int(datetime(2021, 1, 1, tzinfo=FEED_TZ).timestamp())
    text = csv_text(DUMP, f"{imei(1)},510101234567890,+628111,2020-12-01")
    assert run("operator-dump", text, cutoff=cutoff).added == 1


def test_dump_leaves_registered_devices_unchanged(store: Store, run: Importer) -> None:
    """A registered device in a dump is unchanged, again and again."""
    run("manufacturer", csv_text(MAKER, f"{imei(1)},B,M,T,X,2024-01-01"))
    text = csv_text(DUMP, f"{imei(1)},510101234567890,+628111,2019-01-01")
    assert run("operator-dump", text).unchanged == 1
    assert decide(store, 1) == (Status.WHITELISTED, Reason.REGISTERED, Source.MANUFACTURER)


# -- visitors --------------------------------------------------------------------------


def _day(offset: int) -> str:
    return (datetime.now(FEED_TZ) + timedelta(days=offset)).date().isoformat()


@pytest.mark.parametrize(("days", "ok"), [(1, True), (90, True), (91, False)])
def test_visitor_limit_90_days(store: Store, run: Importer, days: int, ok: bool) -> None:
    """valid_until up to 90 days after registered_at is TEMPORARY; 91 days is too long."""
    summary = run("visitor", csv_text(VISIT, f"{imei(1)},A1234567,{_day(0)},{_day(days)}"))
    if ok:
        assert decide(store, 1) == (Status.WHITELISTED, Reason.TEMPORARY, Source.OPERATOR)
    else:
        assert summary.rejected == {"too_long": 1}
        assert "at most 90 days" in summary.first_rejects[0].message


def test_visitor_limit_is_configurable(store: Store, run: Importer) -> None:
    """--visitor-max-days 30 refuses 31 days."""
    text = csv_text(VISIT, f"{imei(1)},A1234567,{_day(0)},{_day(31)}")
    assert run("visitor", text, visitor_max_days=30).rejected == {"too_long": 1}


def test_valid_until_before_start_is_a_bad_date(store: Store, run: Importer) -> None:
    """valid_until not after registered_at is a bad date."""
    summary = run(
        "visitor", csv_text(VISIT, f"{imei(1)},A1234567,{_day(0)},{_day(-1)}"), max_bad_ratio=1
    )
    assert summary.rejected == {"bad_date": 1}


def test_visitor_expires_at_read_time(store: Store, run: Importer) -> None:
    """Through valid_until the device is TEMPORARY; after it, BLACKLISTED / EXPIRED."""
    run("visitor", csv_text(VISIT, f"{imei(1)},A1234567,2024-01-01,2024-03-31"))
    end_of_day = datetime(2024, 4, 1, tzinfo=FEED_TZ).timestamp()
    assert decide(store, 1, end_of_day - 1)[1] is Reason.TEMPORARY
    assert decide(store, 1, end_of_day)[:2] == (Status.BLACKLISTED, Reason.EXPIRED)
    response = Checker(store, Policy()).check_one(eir_pb2.CheckIMEIRequest(imei=imei(1)))
    assert (response.status, response.reason) == (Status.BLACKLISTED, Reason.EXPIRED)


def test_expired_visitor_may_register_again(store: Store, run: Importer) -> None:
    """An expired temporary registration may be renewed; a running one may not."""
    run("visitor", csv_text(VISIT, f"{imei(1)},A1234567,2024-01-01,2024-02-01"))
    assert run("visitor", csv_text(VISIT, f"{imei(1)},B2345678,{_day(0)},{_day(30)}")).changed == 1
    again = run("visitor", csv_text(VISIT, f"{imei(1)},C3456789,{_day(0)},{_day(60)}"))
    assert again.rejected == {"conflict": 1}


def test_visitor_cannot_override_a_registration(store: Store, run: Importer) -> None:
    """A registered device cannot be made temporary."""
    run("manufacturer", csv_text(MAKER, f"{imei(1)},B,M,T,X,2024-01-01"))
    summary = run("visitor", csv_text(VISIT, f"{imei(1)},A1234567,{_day(0)},{_day(30)}"))
    assert summary.rejected == {"conflict": 1}


# -- exceptions ------------------------------------------------------------------------


def test_exception_list(store: Store, run: Importer) -> None:
    """Exceptions are WHITELISTED / EXEMPT / MINISTRY, forever or until valid_until."""
    text = csv_text(
        EXCEPT, f"{imei(1)},DIPLOMAT,KEMLU/1,", f"{imei(2)},STATE_GUEST,KEMLU/2,2024-01-31"
    )
    assert run("exception", text).added == 2
    assert decide(store, 1) == (Status.WHITELISTED, Reason.EXEMPT, Source.MINISTRY)
    assert decide(store, 2)[:2] == (Status.BLACKLISTED, Reason.EXPIRED)
    record = store.get(parse(imei(1)).key)
    assert record is not None
    assert record.expires_at == 0


def test_exception_file_may_omit_valid_until(store: Store, run: Importer) -> None:
    """valid_until is optional as a column too."""
    assert run("exception", csv_text("imei,category,reference", f"{imei(1)},VIP,R1")).added == 1


# -- lost and stolen -------------------------------------------------------------------


def test_block_beats_registration_and_unblock_restores_it(store: Store, run: Importer) -> None:
    """BLOCK: BLACKLISTED / LOST_STOLEN; UNBLOCK: exactly the record it had before."""
    run("manufacturer", csv_text(MAKER, f"{imei(1)},B,M,T,X,2024-01-01"))
    before = store.get(parse(imei(1)).key)
    assert before is not None
    run("lost-stolen", csv_text(LOST, f"{imei(1)},POLRI/1,BLOCK,2024-05-01"))
    assert decide(store, 1) == (Status.BLACKLISTED, Reason.LOST_STOLEN, Source.MANUFACTURER)
    run("lost-stolen", csv_text(LOST, f"{imei(1)},POLRI/1,UNBLOCK,2024-06-01"))
    assert store.get(parse(imei(1)).key) == before


def test_block_of_unknown_device_and_unblock_removes_it(store: Store, run: Importer) -> None:
    """An unregistered device is blocked; unblocked, it is unknown again (no record)."""
    run("lost-stolen", csv_text(LOST, f"{imei(1)},POLRI/1,BLOCK,2024-05-01"))
    assert store.get(parse(imei(1)).key) == Record(lost_stolen=True)
    run("lost-stolen", csv_text(LOST, f"{imei(1)},POLRI/1,UNBLOCK,2024-06-01"))
    assert store.get(parse(imei(1)).key) is None


def test_registration_while_blocked_keeps_the_block(store: Store, run: Importer) -> None:
    """A device reported stolen and then registered stays blocked until UNBLOCK."""
    run("lost-stolen", csv_text(LOST, f"{imei(1)},POLRI/1,BLOCK,2024-05-01"))
    assert run("manufacturer", csv_text(MAKER, f"{imei(1)},B,M,T,X,2024-01-01")).added == 1
    assert decide(store, 1)[1] is Reason.LOST_STOLEN
    run("lost-stolen", csv_text(LOST, f"{imei(1)},POLRI/1,UNBLOCK,2024-06-01"))
    assert decide(store, 1) == (Status.WHITELISTED, Reason.REGISTERED, Source.MANUFACTURER)


def test_unblock_of_unblocked_device_is_rejected(store: Store, run: Importer) -> None:
    """UNBLOCK of a device not reported is not_blocked; BLOCK twice is unchanged."""
    summary = run("lost-stolen", csv_text(LOST, f"{imei(1)},POLRI/1,UNBLOCK,2024-06-01"))
    assert summary.rejected == {"not_blocked": 1}
    run("lost-stolen", csv_text(LOST, f"{imei(2)},POLRI/2,BLOCK,2024-06-01"))
    assert run("lost-stolen", csv_text(LOST, f"{imei(2)},POLRI/3,BLOCK,2024-06-02")).unchanged == 1


def test_block_then_unblock_in_one_file_are_two_events(store: Store, run: Importer) -> None:
    """A lost-stolen file is a log of events: BLOCK then UNBLOCK of one device are both
    applied, in reported_at order; only an exact repeat of a row is a duplicate."""
    text = csv_text(
        LOST,
        *(f"{imei(100 + i)},P/{i},BLOCK,2024-05-01" for i in range(30)),
        f"{imei(1)},POLRI/1,UNBLOCK,2024-05-02",
        f"{imei(1)},POLRI/1,BLOCK,2024-05-01",
        f"{imei(1)},POLRI/1,BLOCK,2024-05-01",
    )
    summary = run("lost-stolen", text)
    assert summary.rejected == {"duplicate": 1}
    assert summary.changed == 32
    assert store.get(parse(imei(1)).key) is None  # known only from its report


def test_expired_at_read_time_not_stored(store: Store) -> None:
    """Expiry is decided when read: the stored record does not change."""
    now = int(datetime.now(UTC).timestamp())
    record = Record(Reason.TEMPORARY, Source.OPERATOR, registered_at=now - 100, expires_at=now - 1)
    assert Policy().decide(record, now).reason is Reason.EXPIRED
