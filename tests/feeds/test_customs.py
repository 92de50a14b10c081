"""The customs feed: tax, the per-arrival quota and the cooldown on the identity token."""

from __future__ import annotations

import time

from ceir.imei import parse
from ceir.policy import Policy
from ceir.record import Reason, Source, Status
from ceir.store import Store

from .conftest import Importer, csv_text, imei

HEADER = "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid"
NIK = "3171012345678901"


def row(serial: int, arrival: str = "2024-01-10", nik: str = NIK, paid: str = "true") -> str:
    return f"{imei(serial)},BC-{serial},NIK,{nik},{arrival},PASSENGER,{paid}"


def filler(n: int) -> list[str]:
    """Good rows of other travellers, so a few rejects stay under the bad-row limit."""
    return [row(1000 + i, nik=f"99{i:014d}") for i in range(n)]


def test_paid_devices_become_registered_customs(store: Store, run: Importer) -> None:
    """Tax paid: WHITELISTED / REGISTERED / CUSTOMS."""
    assert run("customs", csv_text(HEADER, row(1))).added == 1
    decision = Policy().decide(store.get(parse(imei(1)).key), time.time())
    assert (decision.status, decision.reason, decision.source) == (
        Status.WHITELISTED,
        Reason.REGISTERED,
        Source.CUSTOMS,
    )


def test_unpaid_tax_is_not_eligible(store: Store, run: Importer) -> None:
    """tax_paid false: rejected as not eligible, nothing registered."""
    summary = run("customs", csv_text(HEADER, row(1, paid="false")))
    assert summary.rejected == {"not_eligible": 1}
    assert store.get(parse(imei(1)).key) is None


def test_enum_values_are_exact_with_the_fix(store: Store, run: Importer) -> None:
    """'passenger' and 'TRUE' are bad values; the fix says what to write."""
    text = csv_text(
        HEADER,
        *filler(60),
        f"{imei(1)},BC-1,NIK,{NIK},2024-01-10,passenger,true",
        f"{imei(2)},BC-2,KTP,{NIK},2024-01-10,PASSENGER,true",
        f"{imei(3)},BC-3,NIK,{NIK},2024-01-10,PASSENGER,TRUE",
    )
    summary = run("customs", text)
    assert summary.rejected == {"bad_value": 3}
    assert [(r.field, r.fix) for r in summary.first_rejects] == [
        ("channel", "PASSENGER"),
        ("id_type", ""),
        ("tax_paid", "true"),
    ]


def test_two_devices_per_arrival_third_is_refused(store: Store, run: Importer) -> None:
    """The same identity and arrival date: two devices pass, the third is over quota."""
    summary = run("customs", csv_text(HEADER, row(1), row(2), row(3)))
    assert summary.added == 2
    assert summary.rejected == {"quota": 1}
    assert "at most 2 per arrival" in summary.first_rejects[0].message
    assert store.get(parse(imei(3)).key) is None


def test_quota_counts_across_files_and_is_configurable(store: Store, run: Importer) -> None:
    """The quota holds across files; --customs-quota 3 admits a third device."""
    run("customs", csv_text(HEADER, row(1), row(2)))
    assert run("customs", csv_text(HEADER, row(3))).rejected == {"quota": 1}
    assert run("customs", csv_text(HEADER, row(3)) + "\n", customs_quota=3).added == 1


def test_same_identity_new_arrival_waits_180_days(store: Store, run: Importer) -> None:
    """Another arrival of the same identity within 180 days is refused; at 180 days it passes."""
    run("customs", csv_text(HEADER, row(1, "2024-01-10")))
    early = run("customs", csv_text(HEADER, row(2, "2024-07-07")))  # 179 days later
    assert early.rejected == {"cooldown": 1}
    assert "from 2024-07-08" in early.first_rejects[0].message
    assert run("customs", csv_text(HEADER, row(3, "2024-07-08"))).added == 1  # 180 days


def test_cooldown_is_configurable(store: Store, run: Importer) -> None:
    """--customs-cooldown-days 30 admits an arrival 31 days later."""
    run("customs", csv_text(HEADER, row(1, "2024-01-10")))
    summary = run("customs", csv_text(HEADER, row(2, "2024-02-10")), customs_cooldown_days=30)
    assert summary.added == 1


def test_other_identities_are_not_affected(store: Store, run: Importer) -> None:
    """Quota and cooldown count per identity token, not per file or declaration."""
    text = csv_text(HEADER, row(1), row(2), row(3, nik="3171019999999999"))
    assert run("customs", text).added == 3


def test_refused_rows_do_not_consume_quota(store: Store, run: Importer) -> None:
    """A device already registered (unchanged) or unpaid does not count toward the quota."""
    run("customs", csv_text(HEADER, row(1)))
    summary = run("customs", csv_text(HEADER, row(1), row(2, paid="false"), *filler(40), row(3)))
    assert summary.unchanged == 1
    assert store.get(parse(imei(3)).key) is not None


def test_customs_upgrades_a_visitor(store: Store, run: Importer) -> None:
    """A visitor's device registered at customs becomes REGISTERED (an upgrade, not new)."""
    run(
        "visitor",
        csv_text(
            "imei,passport_number,registered_at,valid_until",
            f"{imei(1)},A1234567,2024-01-01,2024-02-01",
        ),
    )
    summary = run("customs", csv_text(HEADER, row(1)))
    assert (summary.added, summary.changed) == (0, 1)
    record = store.get(parse(imei(1)).key)
    assert record is not None
    assert (record.reason, record.expires_at) == (Reason.REGISTERED, 0)
