"""`ceir purge`: expired temporaries and old identity tokens go; the audit log says so
without personal data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ceir.cli.app import main
from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.importer import import_file, rejects_of
from ceir.feeds.retention import purge
from ceir.imei import check_digit, parse
from ceir.record import Reason
from ceir.store import Store, TacInfo, audit, open_store

TAC = "35209900"
DAY = 86_400
NOW = 1_790_000_000  # 2026-09-21
PASSPORTS = ("X1234567", "Y7654321")
NIK = "3171234567890123"


def imei(serial: int) -> str:
    body = f"{TAC}{serial:06d}"
    return f"{body}{check_digit(body)}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "db")
    s.put_tacs([TacInfo(TAC, "Nusantara", "N1", "Smartphone")])
    visitors = tmp_path / "visitors.csv"
    visitors.write_text(
        "imei,passport_number,registered_at,valid_until\n"
        f"{imei(1)},{PASSPORTS[0]},2025-01-01,2025-03-01\n"  # ended long ago
        f"{imei(2)},{PASSPORTS[1]},2026-09-01,2026-11-01\n"  # still valid
        f"{imei(3)},{PASSPORTS[1]},2025-01-01,2025-03-01\n"  # ended, but reported stolen
    )
    import_file(s, Kind.VISITOR, visitors, actor="operator:xl@510-11", clock=lambda: NOW)
    stolen = tmp_path / "stolen.csv"
    stolen.write_text(f"imei,report_ref,action,reported_at\n{imei(3)},POL-1,BLOCK,2025-02-01\n")
    import_file(s, Kind.LOST_STOLEN, stolen, actor="operator:xl@510-11", clock=lambda: NOW)
    customs = tmp_path / "customs.csv"
    customs.write_text(
        "imei,declaration_no,id_type,id_number,arrival_date,channel,tax_paid\n"
        f"{imei(10)},BC-1,NIK,{NIK},2024-06-01,PASSENGER,true\n"
        f"{imei(11)},BC-2,PASSPORT,{PASSPORTS[0]},2026-09-01,PASSENGER,true\n"
    )
    import_file(s, Kind.CUSTOMS, customs, actor="customs:bea", clock=lambda: NOW)
    yield s
    s.close()


def test_purge_removes_what_is_past_retention_and_keeps_the_rest(store: Store) -> None:
    """The ended visitor goes; the valid one and the stolen one stay; the old arrival's
    token goes, the recent one stays; the audit log counts it all."""
    assert store.get(parse(imei(1)).key) is not None
    purged = purge(store, actor="local:ops@host", clock=lambda: NOW)
    assert (purged.temporaries, purged.identities, purged.customs_tokens) == (1, 1, 1)
    assert store.get(parse(imei(1)).key) is None
    assert store.get(parse(imei(2)).key) is not None
    kept = store.get(parse(imei(3)).key)
    assert kept is not None
    assert kept.lost_stolen
    with store.snapshot() as tables:
        assert tables.identities.count() == 1
    details = dict(store.dump()["details"])
    old = details[parse(imei(10)).key + bytes((Kind.CUSTOMS.code,))].split(b"\x1f")
    new = details[parse(imei(11)).key + bytes((Kind.CUSTOMS.code,))].split(b"\x1f")
    assert old[0] == b"BC-1"
    assert old[2] == b""
    assert new[2].startswith(b"tok_")
    assert parse(imei(1)).key + bytes((Kind.VISITOR.code,)) not in details
    origin = audit.get_origin(store, purged.origin)
    assert origin is not None
    assert origin["counts"] == {"temporaries": 1, "identities": 1, "customs_tokens": 1,
                                "stages": 0, "rejects": 0}  # fmt: skip
    entry = audit.history(store, parse(imei(1)).key)[-1]
    assert entry.action is audit.Action.PURGE
    assert entry.new is None
    assert entry.old is not None
    assert entry.old.reason is Reason.TEMPORARY


def test_purge_twice_removes_nothing_more(store: Store) -> None:
    """A second purge at the same time finds nothing left to remove."""
    purge(store, actor="a", clock=lambda: NOW)
    again = purge(store, actor="a", clock=lambda: NOW)
    assert (again.temporaries, again.identities, again.customs_tokens) == (0, 0, 0)


def test_purge_command(tmp_path: Path, store: Store) -> None:
    """`ceir purge` prints the counts (nothing is due today for a store imported 'now')."""
    store.close()
    result = CliRunner().invoke(main, ["purge", "--db", str(tmp_path / "db")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("purged ")
    assert "expired temporary registrations" in result.output


def _with_bad_rows(store: Store, path: Path, serial: int, at: int) -> int:
    """Import a manufacturer file with one bad row at time *at*; returns its origin."""
    path.write_text(
        "imei,brand,model,tpp_number,maker_id,produced_at\n"
        f"{imei(serial)},Nusantara,N1,TPP-1,M1,2025-01-01\n"
        f"{NIK},Nusantara,N1,TPP-1,M1,2025-01-01\n"  # an identity number in the imei column
    )
    summary = import_file(store, Kind.MANUFACTURER, path, actor="manufacturer:n",
                          clock=lambda: at, options=Options(max_bad_ratio=1.0))  # fmt: skip
    assert list(rejects_of(store, summary.origin)), "the bad row is kept as a reject"
    return summary.origin


def test_purge_removes_old_rejects_and_keeps_recent(store: Store, tmp_path: Path) -> None:
    """Rejected rows of an import older than rejects_days go; a recent import's stay."""
    old = _with_bad_rows(store, tmp_path / "old.csv", 40, NOW - 91 * DAY)
    recent = _with_bad_rows(store, tmp_path / "new.csv", 41, NOW - 89 * DAY)
    purged = purge(store, actor="a", rejects_days=90, clock=lambda: NOW)
    assert purged.rejects == 1
    assert list(rejects_of(store, old)) == []
    assert len(list(rejects_of(store, recent))) == 1
    info = audit.get_origin(store, purged.origin)
    assert info is not None
    assert (info["counts"]["rejects"], info["retention"]["rejects_days"]) == (1, 90)
    assert purge(store, actor="a", rejects_days=90, clock=lambda: NOW).rejects == 0
    assert purge(store, actor="a", rejects_days=0, clock=lambda: NOW).rejects == 1
    assert list(rejects_of(store, recent)) == []


def test_purge_command_rejects_days(tmp_path: Path, store: Store) -> None:
    """`ceir purge --rejects-days 0` deletes today's rejects; the default keeps them."""
    origin = _with_bad_rows(store, tmp_path / "today.csv", 42, int(time.time()) - 60)
    store.close()
    db = ["--db", str(tmp_path / "db")]
    kept = CliRunner().invoke(main, ["purge", *db])
    assert kept.exit_code == 0, kept.output
    assert "0 old rejected rows" in kept.output
    gone = CliRunner().invoke(main, ["purge", *db, "--rejects-days", "0"])
    assert gone.exit_code == 0, gone.output
    assert "1 old rejected rows" in gone.output
    with open_store(tmp_path / "db") as s:
        assert list(rejects_of(s, origin)) == []
