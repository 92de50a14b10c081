"""The bulk import path against the row-by-row one (the oracle): same store, same summary.

Each example imports one file twice, into two stores that share a token key: once with
``bulk=False`` (csv.reader, ``feed.parse`` and ``feed.decide`` per row) and once on the
bulk path; the summary and the reject report must be equal, and so must the stores:
devices, rejects, identities byte for byte; details as read (the bulk path writes in key
order, so shared shapes are numbered in another order); every device's audit entries
(who, when, file line, action, old and new record) and change-log operations in order.
The bulk path writes the file in ascending key order, the row path in file order, so
their audit batches differ when the file takes more than one batch; in one batch the
two stores are equal byte for byte, the audit chain included.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.errors import FeedFormatError, FeedRefusedError
from ceir.feeds import Kind, _spool
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, generate
from ceir.feeds.importer import import_file
from ceir.imei import check_digit
from ceir.store import Store, audit, changes, open_store
from ceir.store.backup import verify

from .conftest import ACTOR, csv_text, imei

NOW = 1_750_000_000.0


def _raw(store: Store) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every table but the import log, change-log commit times masked (two runs)."""
    out = store.dump(skip=frozenset({"imports", "config", "volume"}))
    out["changes"] = [(k, bytes(8) + v[8:]) for k, v in out.get("changes", [])]
    return out


def _dump(store: Store) -> dict[str, Any]:
    """What the store holds, independent of how the writes were cut into batches."""
    raw = _raw(store)
    batched = ("details", "shapes", "audit", "audit_links", "changes")
    out: dict[str, Any] = {k: v for k, v in raw.items() if k not in batched}
    with store.snapshot() as tables:
        out["details"] = list(tables.details.items())
    history: dict[bytes, list[tuple[Any, ...]]] = {}
    for e in audit.entries(store):
        history.setdefault(e.key, []).append((e.at, e.origin, e.line, e.action, e.old, e.new))
    out["audit"] = sorted(history.items())
    ops: dict[bytes, list[tuple[Any, ...]]] = {}
    for _k, value in raw["changes"]:
        for op, key, found in changes.unpack_ops(changes.open_body(value[8:])):
            ops.setdefault(key, []).append((op, found))
    out["changes"] = sorted(ops.items())
    out["raw"] = raw
    return out


def _both(
    root: Path,
    kind: Kind,
    feed: bytes,
    options: Options,
    before: bytes | None = None,
    tacs: Path | None = None,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Import (*before*, then) *feed* row by row and in bulk, over the TAC file *tacs*
    (default: the generator's); each run's dump and summary."""
    if tacs is None:
        tacs = root / "tac.csv"
        generate(Kind.TAC, POOL, tacs)
    results = []
    for use_bulk in (False, True):
        db = root / f"store-{use_bulk}"
        if use_bulk:  # the same token key: the same tokens in details
            shutil.copy(root / "store-False.token-key", root / "store-True.token-key")
        with open_store(db) as store:
            import_file(store, Kind.TAC, tacs, actor=ACTOR, clock=lambda: NOW)
            if before is not None:
                path = root / "before.csv"
                path.write_bytes(before)
                import_file(
                    store, kind, path, actor=ACTOR, options=options, clock=lambda: NOW,
                    bulk=use_bulk,
                )  # fmt: skip
            path = root / "feed.csv"
            path.write_bytes(feed)
            report = root / f"rejects-{use_bulk}.csv"
            try:
                done = import_file(
                    store, kind, path, actor=ACTOR, options=options, clock=lambda: NOW,
                    bulk=use_bulk, report=report,
                )  # fmt: skip
                summary = asdict(done)
            except FeedRefusedError as exc:
                summary = {"refused": str(exc), **asdict(exc.summary)}
            except FeedFormatError as exc:
                summary = {"error": str(exc)}
            summary.pop("elapsed", None)
            if summary.pop("report", None):
                summary["report"] = report.read_text()
            state = _dump(store)
        report = verify(db)  # the audit chain holds
        state["verified"] = report.ok, report.problems
        results.append((state, summary))
    return results


def _feed(kind: Kind, rows: int, dirt: float, seed: int, start: int = -1) -> bytes:
    out = io.StringIO(newline="")
    generate(kind, rows, out, dirt=dirt, seed=seed, start=start, now=int(NOW))
    return out.getvalue().encode()


@pytest.fixture
def root() -> Any:
    path = Path(tempfile.mkdtemp(prefix="ceir-bulk-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@settings(max_examples=12)
@given(
    kind=st.sampled_from([Kind.MANUFACTURER, Kind.OPERATOR_DUMP]),
    rows=st.integers(0, 400),
    dirt=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    seed=st.integers(0, 10**6),
    batch=st.integers(1, 150),
    overlap=st.booleans(),
    unknown=st.booleans(),
)
def test_bulk_equals_row_by_row_on_generated_dirty_files(
    kind: Kind, rows: int, dirt: float, seed: int, batch: int, overlap: bool, unknown: bool
) -> None:
    """Generated files with any share of dirt, any batch size, over a store that already
    holds some of the devices: the bulk path ends in the row-by-row path's store."""
    options = Options(
        batch_rows=batch, max_bad_ratio=1.0, max_new_devices=10**6, allow_unknown_tac=unknown
    )
    before = _feed(kind, rows // 2, dirt, seed + 1) if overlap else None
    root = Path(tempfile.mkdtemp(prefix="ceir-bulk-"))
    try:
        (want, want_summary), (got, got_summary) = _both(
            root, kind, _feed(kind, rows, dirt, seed), options, before
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _same(got, got_summary, want, want_summary, one_batch=batch >= rows)


def _same(
    got: dict[str, Any],
    got_summary: dict[str, Any],
    want: dict[str, Any],
    want_summary: dict[str, Any],
    *,
    one_batch: bool,
) -> None:
    """The two runs' summaries and stores are equal (their raw tables too in one batch)."""
    assert got_summary == want_summary
    got_raw, want_raw = got.pop("raw"), want.pop("raw")
    assert got == want
    assert got["verified"][0], got["verified"]
    if one_batch:
        assert got_raw == want_raw


CRLF = "imei,brand,model,tpp_number,maker_id,produced_at\r\n"
GOOD = "011234579047111,Samsung,Galaxy A10,TPP-00000,M0000,2025-05-14"
OTHER = "361313769047119,Apple,iPhone 11,TPP-00001,M0001,2024-01-30"


@pytest.mark.parametrize(
    "text",
    [
        CRLF + GOOD + "\r\n" + OTHER + "\r\n",  # CRLF, as csv.writer writes
        CRLF.replace("\r", "") + GOOD + "\n" + OTHER,  # LF, no final line end
        CRLF + GOOD + "\r\n\r\n" + OTHER + "\r\n",  # a blank line: row by row
        CRLF + '"' + GOOD.replace(",", '","') + '"\r\n' + OTHER,  # quoted: row by row
        CRLF + GOOD + "\r" + OTHER + "\r\n",  # a lone CR ends a csv row
        CRLF + GOOD.replace("Samsung", "Sämsung") + "\r\n" + OTHER + "\r\n",  # UTF-8 text
        CRLF + GOOD.replace("Samsung", " Samsung ") + "\r\n",  # trimmed and counted
        CRLF + GOOD + ",extra\r\n" + OTHER + "\r\n",  # a field too many
        CRLF + GOOD[:-2] + "\r\n" + GOOD + "\r\n" + GOOD + "\r\n",  # bad date, duplicate
        CRLF + GOOD + "\r\n" + "x" * 70_000 + "\r\n",  # a line too long
        CRLF.replace("imei,brand", "brand,imei") + "Samsung," + GOOD.replace(",Samsung", ""),
        "\ufeff" + CRLF + GOOD + "\r\n",  # a byte order mark
        CRLF + GOOD.replace("Samsung", "Caf\udce9") + "\r\n",  # not UTF-8
    ],
)
def test_bulk_equals_row_by_row_on_edge_cases(root: Path, text: str) -> None:
    """Line ends, quotes, blank lines, UTF-8, trimming, widths, dates, duplicates, long
    lines, reordered columns, a BOM, bad UTF-8: the same outcome on both paths."""
    feed = text.encode("utf-8", "surrogateescape")
    options = Options(max_bad_ratio=1.0, batch_rows=2)
    (want, want_summary), (got, got_summary) = _both(root, Kind.MANUFACTURER, feed, options)
    _same(got, got_summary, want, want_summary, one_batch=False)


DUMP = "imei,imsi,msisdn,first_seen\n"
SEEN = "011234579047111,510101234567890,+6281234567890,2019-05-01"
SEEN2 = "361313769047119,510109876543210,+6285599887766,2018-01-30"


@pytest.mark.parametrize(
    "text",
    [
        DUMP + SEEN + "\n" + SEEN2 + "\n",
        DUMP + SEEN.replace("2019-05-01", "2019-02-30") + "\n" + SEEN2 + "\n",  # no such day
        DUMP + SEEN.replace("2019-05-01", "1969-12-31") + "\n" + SEEN2 + "\n",  # before 1970
        DUMP + SEEN.replace("2019-05-01", "2019-05-01T10:00:00+07:00") + "\n",  # a time
        DUMP + SEEN.replace("+62812", "+62 812-") + "\n" + SEEN2 + "\n",  # separators
        DUMP + SEEN.replace("+62812", "\uff0b\uff16\uff12812") + "\n",  # fullwidth
        DUMP + SEEN.replace("51010", "5101A") + "\n" + SEEN2 + "\n",  # IMSI not digits
        DUMP + SEEN.replace(",+6281234567890,", ",,") + "\n" + SEEN2 + "\n",  # no MSISDN
        DUMP + SEEN.replace(",+6281234567890,", ",+" + "1" * 300 + ",") + "\n",  # long
        DUMP + SEEN + "\n" + SEEN + "\n",  # a duplicate
    ],
)
def test_operator_dump_bulk_equals_row_by_row_on_edge_cases(root: Path, text: str) -> None:
    """Dates that are no day, before 1970 or with a time; MSISDNs to normalise (spaces,
    dashes, fullwidth digits), empty or long; an IMSI with a letter; a duplicate: the
    bulk path's tokens and rejects are the row-by-row path's."""
    options = Options(max_bad_ratio=1.0, batch_rows=1)
    (want, want_summary), (got, got_summary) = _both(
        root, Kind.OPERATOR_DUMP, text.encode(), options
    )
    assert got_summary == want_summary
    assert got == want
    assert want["details"]  # something was registered, with tokens


@pytest.mark.parametrize(("kept", "ratio"), [(5, 1.0), (10_000, 1.0), (5, 0.01), (10_000, 0.01)])
def test_dump_rows_rejected_by_their_date_alike_equal_row_by_row(
    root: Path, monkeypatch: pytest.MonkeyPatch, kept: int, ratio: float
) -> None:
    """Rows after the cutoff, in the future or on no day (one reject per date, shared by
    its rows on the bulk path) mixed with rows parsed one by one (a bad IMSI) across
    chunks and batches: the same counts, kept rejects (the first by line) and store,
    imported or refused for its bad rows."""
    from ceir.feeds import bulk, importer

    monkeypatch.setattr(importer, "MAX_KEPT_REJECTS", kept)
    monkeypatch.setattr(bulk, "_CHECK_ROWS", 37)
    dates = ["2021-03-01", "2099-01-01", "2019-02-30", "2020-09-16", "2019-05-01"]
    rows = []
    for i in range(300):
        imsi = "5101A0000000001" if i % 7 == 3 else f"51010{i:010d}"
        rows.append(f"{imei(i)},{imsi},+628{i:09d},{dates[i % 5 if i % 11 else 0]}")
    feed = csv_text("imei,imsi,msisdn,first_seen", *rows).encode()
    (want, want_summary), (got, got_summary) = _both(
        root, Kind.OPERATOR_DUMP, feed, Options(max_bad_ratio=ratio, batch_rows=23)
    )
    assert want_summary["rejected"]["not_eligible"] > 50
    assert ("refused" in want_summary) == (ratio < 1)
    assert want_summary["first_rejects"]
    _same(got, got_summary, want, want_summary, one_batch=False)


def test_refused_file_reports_the_same_rejects(root: Path) -> None:
    """A file refused for its bad rows gets the same summary and reject report, with the
    duplicates found by the bulk check pass at their lines."""
    feed = _feed(Kind.MANUFACTURER, 300, 0.3, 7)
    (want, want_summary), (got, got_summary) = _both(
        root, Kind.MANUFACTURER, feed, Options(max_bad_ratio=0.01)
    )
    assert "malformed" in want_summary["refused"]
    assert "duplicate" in want_summary["report"]
    _same(got, got_summary, want, want_summary, one_batch=True)


@settings(max_examples=50)
@given(
    keys=st.lists(st.integers(0, 40), max_size=200),
    bucket=st.integers(1, 50),
)
def test_key_order_sorts_by_key_then_row_in_ranges(keys: list[int], bucket: int) -> None:
    """``key_order`` over the spooled rows in any number of key ranges yields every row
    once, by (key, row), so a duplicate is exactly a row whose key equals the one
    before: the rows repeating a key on an earlier row (a Python set, the reference)."""
    rows = np.zeros(len(keys), _spool.ROW)
    rows["key"], rows["row"] = keys, np.arange(len(keys))
    parts = list(_spool.key_order(rows, bucket))
    got = np.concatenate(parts) if parts else np.zeros(0, _spool.ROW)
    assert [(int(r["key"]), int(r["row"])) for r in got] == sorted(
        (k, i) for i, k in enumerate(keys)
    )
    assert all(p["key"].max() < q["key"].min() for p, q in itertools.pairwise(parts))
    dup = np.zeros(len(got), bool)
    dup[1:] = got["key"][1:] == got["key"][:-1]
    seen: set[int] = set()
    want = set()
    for i, k in enumerate(keys):
        if k in seen:
            want.add(i)
        seen.add(k)
    assert set(got["row"][dup].tolist()) == want


OSMOCOM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "osmocom-tacdb.csv"


def _from_real_tacs(rows: list[list[str]], seed: int) -> bytes:
    """A manufacturer file of devices of the real TAC database's rows, its dirt carried
    over: TACs that lost their leading zero (14-digit IMEIs), TACs with a space, names
    with spaces around them, non-ASCII names; some rows repeated, some dates bad."""
    rng = random.Random(seed)
    lines = ["imei,brand,model,tpp_number,maker_id,produced_at"]
    for i, row in enumerate(rows):
        tac, brand, model = row[0], row[1], row[2]
        digits = tac.strip()
        body = f"{digits:0>8}{rng.randrange(10**6):06d}"  # a 7-digit TAC: the zero it lost
        imei = body + (str(check_digit(body)) if body.isdigit() else "")
        if len(digits) < 8:
            imei = imei[8 - len(digits) :]  # ... and the IMEI lost it too
        if tac != tac.strip():
            imei = tac[: len(tac) - len(tac.lstrip())] + imei  # the space stays
        day = f"20{rng.randrange(10, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        if rng.random() < 0.02:
            day = day[:-1]
        brand, model = brand.replace(",", " "), model.replace(",", " ") or "-"
        lines.append(f"{imei},{brand or '-'},{model},TPP-{i % 97:05d},M{i % 13:04d},{day}")
        if rng.random() < 0.03:
            lines.append(lines[-1])
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("batch", [97, 100_000])
def test_bulk_equals_row_by_row_on_the_real_tac_databases_dirt(root: Path, batch: int) -> None:
    """Over the real Osmocom TAC database (imported with its dirt rejected), a file of its
    devices with that dirt: the same outcome on both paths (the file stays plain CSV, so
    the bulk path reads it: the row-by-row one only where a row is not proven)."""
    if not OSMOCOM.exists():
        pytest.skip(f"the real TAC database is not at {OSMOCOM}")
    with OSMOCOM.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[2:]
    rng = random.Random(5)
    picked = rng.sample(rows, 3_000) + [r for r in rows if len(r[0].strip()) != 8][:300]
    feed = _from_real_tacs(picked, 6)
    options = Options(batch_rows=batch, max_bad_ratio=1.0, max_new_devices=10**6)
    (want, want_summary), (got, got_summary) = _both(
        root, Kind.MANUFACTURER, feed, options, tacs=OSMOCOM
    )
    assert want_summary["rejected"].get("unknown_tac", 0) > 100  # the dirt did its part
    assert want_summary["rejected"].get("duplicate", 0) > 10
    assert want_summary["added"] > 2_000
    _same(got, got_summary, want, want_summary, one_batch=batch >= len(picked) * 2)


def test_a_file_of_many_key_ranges_is_spooled_per_range(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file bigger than one sorted range (here: ranges of 40 rows) is dealt out to a
    spool per key range and written range after range: the row-by-row outcome still."""
    monkeypatch.setattr(_spool, "BUCKET", 40)
    monkeypatch.setattr(_spool, "_SCAN", 64)
    options = Options(batch_rows=33, max_bad_ratio=1.0, max_new_devices=10**6)
    before = _feed(Kind.MANUFACTURER, 150, 0.05, 3)
    feed = _feed(Kind.MANUFACTURER, 500, 0.1, 4)
    (want, want_summary), (got, got_summary) = _both(root, Kind.MANUFACTURER, feed, options, before)
    assert want_summary["rejected"].get("duplicate", 0) > 0
    _same(got, got_summary, want, want_summary, one_batch=False)
