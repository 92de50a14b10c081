"""``ceir lists export`` end to end on a real store: the files read back with ``csv``."""

from __future__ import annotations

import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.errors import OutputError, UnknownRunError
from ceir.feeds import Kind
from ceir.feeds.importer import import_file
from ceir.imei import check_digit
from ceir.imei import parse as parse_imei
from ceir.lists.export import ExportOptions, export, prefix_of
from ceir.policy import Policy
from ceir.record import Reason, Record, Source, Status
from ceir.store import Store, open_store
from ceir.store import lists as runs
from tests.lists.conftest import DAY, key_of, one, read_csv, write

T0 = 1_780_000_000  # 2026-05-28, a fixed "now" for the first run
BLACKLIST_COLUMNS = ["imei", "block_date", "reasons"]


def ymd(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y%m%d")


def registered(at: int, expires_at: int = 0, *, lost: bool = False) -> Record:
    return Record(Reason.REGISTERED, Source.MANUFACTURER, lost, at - 400 * DAY, expires_at)


def test_blacklist_round_trip_matches_every_device_in_the_store(
    store: Store, tmp_path: Path
) -> None:
    """Every row read back is a device the policy blacklists, with its reasons and the day
    of its block or expiry; every device the policy blacklists has a row."""
    write(
        store,
        T0 - 10 * DAY,
        {
            1: registered(T0),  # whitelisted
            2: registered(T0, lost=True),  # blocked 10 days ago
            3: Record(lost_stolen=True, registered_at=T0 - 10 * DAY),  # known only as stolen
            4: registered(T0, expires_at=T0 - 3 * DAY),  # expired 3 days ago
            5: registered(T0, expires_at=T0 + 3 * DAY),  # still valid
            6: registered(T0, expires_at=T0 - DAY),
        },
    )
    write(store, T0 - 2 * DAY, {6: registered(T0, expires_at=T0 - DAY, lost=True)})
    # A block through the real lost-stolen feed: the audit log dates it today.
    feed = tmp_path / "lost.csv"
    body = f"{35209900:08d}{123456:06d}"
    feed.write_text(
        f"imei,report_ref,action,reported_at\n{body}{check_digit(body)},POL-1,BLOCK,2026-01-02\n"
    )
    import_file(store, Kind.LOST_STOLEN, feed, actor="test:lists")
    today = ymd(int(datetime.now(UTC).timestamp()))

    done = export(store, tmp_path / "out", now=T0)
    header, rows = read_csv(one(tmp_path / "out", "*_blacklist.csv"))

    assert header == BLACKLIST_COLUMNS
    by_imei = {r["imei"]: r for r in rows}
    assert len(by_imei) == len(rows)
    policy = Policy()
    listed = set()
    for key, record in store.iter_devices():
        text = f"{int.from_bytes(key):014d}"
        decision = policy.decide(record, T0)
        if decision.status is not Status.BLACKLISTED:
            assert text not in by_imei
            continue
        listed.add(text)
        reasons = by_imei[text]["reasons"].split("|")
        assert decision.reason.name in reasons
        assert reasons == sorted(set(reasons))
    assert listed == set(by_imei)
    assert {k: (r["block_date"], r["reasons"]) for k, r in by_imei.items()} == {
        f"{2:014d}": (ymd(T0 - 10 * DAY), "LOST_STOLEN"),
        f"{3:014d}": (ymd(T0 - 10 * DAY), "LOST_STOLEN"),
        f"{4:014d}": (ymd(T0 - 3 * DAY), "EXPIRED"),
        f"{6:014d}": (ymd(T0 - 2 * DAY), "EXPIRED|LOST_STOLEN"),  # the earlier of the two
        body: (today, "LOST_STOLEN"),
    }
    assert done.rows == {"blacklist": 5}
    assert [r.run for r in runs.runs(store)] == [1]


def test_check_digit_option_writes_fifteen_digit_imeis(store: Store, tmp_path: Path) -> None:
    """--check-digit: the 14-digit body and its Luhn digit, a valid IMEI for stdnum too."""
    from stdnum import imei as stdnum_imei

    write(store, T0, {35209900176148: registered(T0, lost=True)})
    export(store, tmp_path / "out", ExportOptions(check_digit=True), now=T0)
    _header, rows = read_csv(one(tmp_path / "out", "*_blacklist.csv"))
    assert [r["imei"] for r in rows] == ["352099001761481"]
    assert stdnum_imei.is_valid(rows[0]["imei"])
    assert parse_imei(rows[0]["imei"]).key == key_of(35209900176148)


def test_first_run_without_base_writes_no_delta(store: Store, tmp_path: Path) -> None:
    """Without --base: the full list and its zip only."""
    done = export(store, tmp_path / "out", now=T0)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"{done.run.prefix}_blacklist.csv", f"{done.run.prefix}_blacklist.zip"]


def test_empty_deltas_still_have_their_header(store: Store, tmp_path: Path) -> None:
    """Nothing changed between two runs: every delta file exists, holding the header only."""
    write(store, T0, {7: registered(T0, lost=True)})
    export(store, tmp_path / "out", now=T0)
    second = export(store, tmp_path / "out", ExportOptions(base=1), now=T0 + 60)
    prefix = second.run.prefix
    for change in ("blocked", "unblocked", "changed"):
        path = tmp_path / "out" / f"{prefix}_blacklist_delta_1_2_{change}.csv"
        assert path.read_text() == "imei,block_date,reasons\n"


def test_zip_holds_exactly_the_csv_files(store: Store, tmp_path: Path) -> None:
    """The zipped copy holds every CSV file of the run's blacklist, byte for byte."""
    write(store, T0, {8: registered(T0, lost=True), 9: registered(T0, expires_at=T0 - DAY)})
    export(store, tmp_path / "a", now=T0)
    write(store, T0 + DAY, {8: registered(T0), 10: registered(T0, lost=True)})
    done = export(store, tmp_path / "b", ExportOptions(base=1), now=T0 + 2 * DAY)
    out = tmp_path / "b"
    csvs = sorted(p for p in out.iterdir() if p.suffix == ".csv")
    assert len(csvs) == 4
    with zipfile.ZipFile(out / f"{done.run.prefix}_blacklist.zip") as archive:
        assert sorted(archive.namelist()) == [p.name for p in csvs]
        for path in csvs:
            assert archive.read(path.name) == path.read_bytes()


def test_unknown_base_is_refused_and_nothing_is_written(store: Store, tmp_path: Path) -> None:
    """--base of no finished run: UnknownRunError naming the runs there are; no file, no run."""
    export(store, tmp_path / "first", now=T0)
    with pytest.raises(UnknownRunError, match=r"--base 5: .* runs recorded are 1\b"):
        export(store, tmp_path / "second", ExportOptions(base=5), now=T0 + 60)
    assert list((tmp_path / "second").iterdir()) == []
    assert [r.run for r in runs.runs(store)] == [1]


def test_a_failed_write_leaves_no_file_and_no_run(store: Store, tmp_path: Path) -> None:
    """A file that cannot be written: OutputError, the files written so far removed, the
    run id released (the next run takes it)."""
    write(store, T0, {11: registered(T0, lost=True)})
    export(store, tmp_path / "out", now=T0)
    # The next run's zip name is taken: its CSV files are written, then removed again.
    prefix = prefix_of(T0 + 60)
    (tmp_path / "out" / f"{prefix}_blacklist.zip").write_text("in the way")
    with pytest.raises(OutputError, match="exists already"):
        export(store, tmp_path / "out", ExportOptions(base=1), now=T0 + 60)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(prefix)] == [
        f"{prefix}_blacklist.zip"
    ]
    assert [r.run for r in runs.runs(store)] == [1]
    assert export(store, tmp_path / "again", ExportOptions(base=1), now=T0 + 60).run.run == 2


# -- deltas: full(base) + delta(base -> run) == full(run) ----------------------------

BODIES = [35209900000000 + i for i in range(12)]
_STATES = st.sampled_from(["none", "white", "lost", "expired", "valid_until", "lost_expired"])


def _record(state: str, at: int, shift: int) -> Record | None:
    if state == "none":
        return None
    if state == "white":
        return registered(at)
    if state == "lost":
        return registered(at, lost=True)
    if state == "expired":
        return registered(at, expires_at=at - (1 + shift) * DAY)
    if state == "valid_until":  # valid now, maybe expired by the next run
        return registered(at, expires_at=at + (1 + shift) * DAY)
    return registered(at, expires_at=at - (1 + shift) * DAY, lost=True)


def _rows(path: Path) -> dict[str, tuple[str, str]]:
    header, rows = read_csv(path)
    assert header == BLACKLIST_COLUMNS
    out = {r["imei"]: (r["block_date"], r["reasons"]) for r in rows}
    assert len(out) == len(rows)
    return out


@settings(max_examples=40)
@given(
    first=st.lists(st.tuples(_STATES, st.integers(0, 5)), min_size=12, max_size=12),
    second=st.dictionaries(st.sampled_from(range(12)), st.tuples(_STATES, st.integers(0, 5))),
    days=st.integers(0, 8),
)
def test_full_base_plus_delta_is_full_run(
    first: list[tuple[str, int]], second: dict[int, tuple[str, int]], days: int
) -> None:
    """Random devices, random changes and time between two runs: applying the delta files
    to the base's full file gives the new full file; each kind holds what it says."""
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "db") as store:
        out = Path(tmp) / "two"
        write(store, T0, {b: _record(s, T0, n) for b, (s, n) in zip(BODIES, first, strict=True)})
        export(store, Path(tmp) / "one", now=T0)
        later = T0 + days * DAY + 60
        write(store, later - 30, {BODIES[i]: _record(s, later, n) for i, (s, n) in second.items()})
        done = export(store, out, ExportOptions(base=1), now=later)

        prefix = done.run.prefix
        base = _rows(one(Path(tmp) / "one", "*_blacklist.csv"))
        new = _rows(out / f"{prefix}_blacklist.csv")
        delta = {
            c: _rows(out / f"{prefix}_blacklist_delta_1_2_{c}.csv")
            for c in ("blocked", "unblocked", "changed")
        }

        assert set(delta["blocked"]) == new.keys() - base.keys()
        assert set(delta["unblocked"]) == base.keys() - new.keys()
        assert all(base[k] != new[k] for k in delta["changed"])
        rebuilt = {k: v for k, v in base.items() if k not in delta["unblocked"]}
        rebuilt.update(delta["blocked"])
        rebuilt.update(delta["changed"])
        assert rebuilt == new


def test_only_the_newest_runs_are_kept(store: Store, tmp_path: Path) -> None:
    """--keep-runs 2: after four runs the store holds runs 3 and 4; run 1 is no base."""
    for n in range(4):
        export(store, tmp_path / str(n), ExportOptions(keep_runs=2), now=T0 + n)
    assert [r.run for r in runs.runs(store)] == [3, 4]
    with pytest.raises(UnknownRunError, match="runs recorded are 3, 4"):
        export(store, tmp_path / "x", ExportOptions(base=1), now=T0 + 9)
