"""The manufacturer feed: registration, unknown TACs, and every malformed-row reason."""

from __future__ import annotations

import time

import pytest

from ceir.errors import FeedRowError
from ceir.imei import parse
from ceir.policy import Policy
from ceir.record import Reason, Source, Status
from ceir.store import Store

from .conftest import Importer, csv_text, imei

HEADER = "imei,brand,model,tpp_number,maker_id,produced_at"


def row(serial: int, produced: str = "2024-03-01", tac: str = "35209900") -> str:
    return f"{imei(serial, tac)},Nusantara,N1,TPP-001,M01,{produced}"


def test_rows_become_whitelisted_registered_manufacturer(store: Store, run: Importer) -> None:
    """Each good row registers its device: WHITELISTED / REGISTERED / MANUFACTURER."""
    summary = run("manufacturer", csv_text(HEADER, row(1), row(2)))
    assert (summary.rows, summary.added, summary.rejected_total) == (2, 2, 0)
    for serial in (1, 2):
        record = store.get(parse(imei(serial)).key)
        decision = Policy().decide(record, time.time())
        assert (decision.status, decision.reason, decision.source) == (
            Status.WHITELISTED,
            Reason.REGISTERED,
            Source.MANUFACTURER,
        )


def test_unknown_tac_rejected_unless_allowed(store: Store, run: Importer) -> None:
    """A TAC not in the TAC table is rejected as unknown_tac; --allow-unknown-tac admits it."""
    text = csv_text(HEADER, *(row(i) for i in range(30)), row(1, tac="86999999"))
    first = run("manufacturer", text)
    assert first.rejected == {"unknown_tac": 1}
    assert store.get(parse(imei(1, "86999999")).key) is None
    second = run("manufacturer", text + "\n", allow_unknown_tac=True)
    assert second.added == 1
    assert store.get(parse(imei(1, "86999999")).key) is not None


def test_lost_leading_zero_gets_the_fix(store: Store, run: Importer) -> None:
    """A 14-digit IMEI that lost its leading zero is refused as unknown TAC, with the fix."""
    from ceir.store import TacInfo

    store.put_tacs([TacInfo("01234500", "Merapi", "M5")])
    full = imei(7, "01234500")
    text = csv_text(HEADER, *(row(i) for i in range(30)), f"{full[1:]},Merapi,M5,T,M,2024-01-01")
    summary = run("manufacturer", text)
    (reject,) = summary.first_rejects
    assert (reject.reason, reject.fix) == ("unknown_tac", full)


BAD_ROWS = [
    ("352099001761482,B,M,T,X,2024-01-01", "imei", "bad_imei", ""),
    ("3520990017614A1,B,M,T,X,2024-01-01", "imei", "bad_imei", ""),
    ("35-209900-176148-1,B,M,T,X,2024-01-01", "imei", "bad_imei", "352099001761481"),
    ("5209900176148,B,M,T,X,2024-01-01", "imei", "bad_imei", "05209900176148"),
    ("3520990017614812,B,M,T,X,2024-01-01", "imei", "bad_imei", ""),
    (",B,M,T,X,2024-01-01", "imei", "missing_field", ""),
    ("352099001761481,,M,T,X,2024-01-01", "brand", "missing_field", ""),
    ("352099001761481,B,M,T,X,31/12/2024", "produced_at", "bad_date", "2024-12-31"),
    ("352099001761481,B,M,T,X,2024-02-30", "produced_at", "bad_date", ""),
    ("352099001761481,B,M,T,X,2024-01-01T10:00:00", "produced_at", "bad_date", ""),
    ("352099001761481,B,M,T,X", "", "malformed_row", ""),
]


@pytest.mark.parametrize(("line", "field", "reason", "fix"), BAD_ROWS)
def test_bad_row_rejected_with_field_reason_and_fix(
    store: Store, run: Importer, line: str, field: str, reason: str, fix: str
) -> None:
    """Each malformed row is rejected with its line, field, reason and obvious fix."""
    good = [row(i) for i in range(100, 130)]
    summary = run("manufacturer", csv_text(HEADER, *good, line))
    assert summary.added == 30
    (reject,) = summary.first_rejects
    assert (reject.line, reject.field, reject.reason) == (32, field, reason)
    if fix:
        assert reject.fix.startswith(fix)
    report = summary.report
    assert report
    with open(report, encoding="utf-8") as f:
        assert f.read().splitlines()[1].startswith(f"feed0.csv,32,{field},{reason},")


def test_duplicate_in_file_rejected_after_the_first(store: Store, run: Importer) -> None:
    """The second row with the same IMEI is rejected as duplicate; the first is imported."""
    text = csv_text(HEADER, *(row(i) for i in range(40)), row(3, produced="2025-01-01"))
    summary = run("manufacturer", text)
    assert summary.added == 40
    assert summary.rejected == {"duplicate": 1}
    assert (summary.first_rejects[0].line, summary.first_rejects[0].field) == (42, "imei")


def test_same_registration_again_is_unchanged_other_details_conflict(
    store: Store, run: Importer
) -> None:
    """A device registered again with the same details is unchanged; other details conflict."""
    run("manufacturer", csv_text(HEADER, row(1), row(2)))
    again = run("manufacturer", csv_text(HEADER, row(1), row(2, produced="2024-04-01"), row(3)))
    assert (again.added, again.unchanged) == (1, 1)
    assert again.rejected == {"conflict": 1}
    assert "already registered by manufacturer" in again.first_rejects[0].message


def test_parse_feed_imei_rejects_imeisv() -> None:
    """Feeds take 15 (or 14) digits; a 16-digit IMEISV is a bad IMEI."""
    from ceir.feeds.rows import parse_feed_imei

    with pytest.raises(FeedRowError, match="IMEISV"):
        parse_feed_imei("3520990017614823")
