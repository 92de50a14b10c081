"""The importer: thresholds, idempotency, batches, resumption, formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceir.errors import FeedFormatError, FeedRefusedError
from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.bulk import Bulk
from ceir.feeds.importer import _Import, import_file
from ceir.imei import parse
from ceir.store import REGISTRY_DBS, Store, TacInfo, audit, open_store

from .conftest import ACTOR, Importer, csv_text, imei

HEADER = "imei,brand,model,tpp_number,maker_id,produced_at"


def rows(n: int, start: int = 0) -> list[str]:
    return [f"{imei(start + i)},Nusantara,N1,TPP-1,M1,2024-01-01" for i in range(n)]


def dump(store: Store) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every sub-database of *store* except the import log and the rolling write counts
    (kept by wall-clock hour), as sorted items."""
    return store.dump(skip=frozenset({"imports", "config", "volume"}))


def test_reimporting_a_file_is_a_no_op_that_says_so(store: Store, run: Importer) -> None:
    """The same bytes again: nothing written, state already-imported, message names the import."""
    text = csv_text(HEADER, *rows(5))
    first = run("manufacturer", text, name="a.csv")
    before = dump(store)
    again = run("manufacturer", text, name="a.csv")
    assert again.state == "already-imported"
    assert f"already imported as import #{first.origin}" in again.message
    assert dump(store) == before


def test_reimport_writes_the_reject_report_again(store: Store, run: Importer) -> None:
    """A no-op re-import still writes the stored reject report (lost if a run was killed
    after its last batch)."""
    text = csv_text(HEADER, *rows(30), "352099001761482,B,M,T,X,2024-01-01")
    first = run("manufacturer", text, name="r.csv")
    Path(first.report).unlink()
    again = run("manufacturer", text, name="r.csv")
    assert again.state == "already-imported"
    assert again.report == first.report
    lines = Path(again.report).read_text().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("r.csv,32,imei,bad_imei,")


def test_more_than_5_percent_bad_refuses_the_file(store: Store, run: Importer) -> None:
    """6 bad rows in 100 (6%) refuse the whole file; nothing is written."""
    before = dump(store)
    bad = ["352099001761482,B,M,T,X,2024-01-01"] * 6
    with pytest.raises(FeedRefusedError, match=r"6 of 100 rows \(6.0%\) are malformed") as info:
        run("manufacturer", csv_text(HEADER, *rows(94), *bad))
    assert dump(store) == before
    summary: Any = info.value.summary
    assert summary.state == "refused"
    assert Path(summary.report).read_text().count("bad_imei") == 6


def test_5_percent_bad_is_still_imported(store: Store, run: Importer) -> None:
    """Exactly 5% malformed rows pass: good rows in, bad rows reported."""
    bad = ["352099001761482,B,M,T,X,2024-01-01"] * 5
    summary = run("manufacturer", csv_text(HEADER, *rows(95), *bad))
    assert (summary.added, summary.rejected_total) == (95, 5)


def test_bad_row_limit_is_configurable(store: Store, run: Importer) -> None:
    """--max-bad-ratio 0.01 refuses what 5% admits."""
    bad = ["352099001761482,B,M,T,X,2024-01-01"] * 2
    with pytest.raises(FeedRefusedError):
        run("manufacturer", csv_text(HEADER, *rows(98), *bad), max_bad_ratio=0.01)


def test_rule_rejections_do_not_count_as_malformed(store: Store, run: Importer) -> None:
    """Devices after the cutoff are rejected but do not trip the bad-row limit."""
    text = csv_text(
        "imei,imsi,msisdn,first_seen",
        *(f"{imei(i)},510100000000001,+62811,2024-01-01" for i in range(50)),
        f"{imei(99)},510100000000001,+62811,2019-01-01",
    )
    summary = run("operator-dump", text)
    assert (summary.added, summary.rejected) == (1, {"not_eligible": 50})


def test_too_many_new_devices_refuse_the_file(store: Store, run: Importer) -> None:
    """A file adding more new devices than its channel's limit is refused whole."""
    before = dump(store)
    with pytest.raises(FeedRefusedError, match="would add 11 new devices, above the limit of 10"):
        run("manufacturer", csv_text(HEADER, *rows(11)), max_new_devices=10)
    assert dump(store) == before
    assert run("manufacturer", csv_text(HEADER, *rows(10)), max_new_devices=10).added == 10


def test_new_device_limit_counts_only_new_devices(store: Store, run: Importer) -> None:
    """Rows for devices already registered do not count toward the new-device limit."""
    run("manufacturer", csv_text(HEADER, *rows(10)))
    summary = run("manufacturer", csv_text(HEADER, *rows(15)), max_new_devices=5)
    assert (summary.added, summary.unchanged) == (5, 10)


def test_batches_are_one_transaction_each_and_record_progress(store: Store, run: Importer) -> None:
    """With 4-row batches, 10 rows are written in 3 batches and the import ends done."""
    summary = run("manufacturer", csv_text(HEADER, *rows(10)), batch_rows=4)
    info = audit.get_origin(store, summary.origin)
    assert info is not None
    assert (info["state"], info["rows_done"], info["actor"]) == ("done", 10, ACTOR)
    assert store.device_count() == 10


def _crashing(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """The *after*-th batch write (row by row or bulk) dies before it commits."""
    calls = {"n": 0}
    for cls in (_Import, Bulk):
        original = cls._write_batch

        def crash(self: Any, *args: Any, original: Any = original) -> Any:
            if calls["n"] == after:
                raise KeyboardInterrupt("simulated crash")
            calls["n"] += 1
            return original(self, *args)

        monkeypatch.setattr(cls, "_write_batch", crash)


@pytest.mark.parametrize("bulk", [True, False])
@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_interrupted_import_resumes_to_the_state_of_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int, bulk: bool
) -> None:
    """Interrupted after any batch (bulk or row-by-row path) and run again asking for the
    other path: the import goes on in the first run's order (rows in file order, or by
    key), and the store equals one uninterrupted run."""
    text = csv_text(
        HEADER,
        *rows(9),
        "352099001761482,B,M,T,X,2024-01-01",
        rows(1, 3)[0],  # a duplicate
    )
    path = tmp_path / "m.csv"
    path.write_text(text)

    def fresh(name: str) -> Store:
        s = open_store(tmp_path / name)
        s.put_tacs([TacInfo("35209900", "Nusantara", "N1", "Smartphone")])
        return s

    options = Options(batch_rows=3, max_bad_ratio=0.5)
    with fresh("clean") as clean:
        expected = import_file(
            clean, Kind.MANUFACTURER, path, actor=ACTOR, options=options, bulk=bulk
        )
        want = dump(clean)
    with fresh("crashed") as crashed:
        with monkeypatch.context() as m:
            _crashing(m, after)
            with pytest.raises(KeyboardInterrupt):
                import_file(
                    crashed, Kind.MANUFACTURER, path, actor=ACTOR, options=options, bulk=bulk
                )
        # Asked for the other path: resumed in the order the first run wrote in.
        got = import_file(
            crashed, Kind.MANUFACTURER, path, actor=ACTOR, options=options, bulk=not bulk
        )
        assert _without_time(dump(crashed)) == _without_time(want)
        assert (got.added, got.rejected, got.rows) == (expected.added, expected.rejected, 11)


def _without_time(d: dict[str, list[tuple[bytes, bytes]]]) -> dict[str, Any]:
    """The dump with the commit time of audit batches and change-log entries masked (a
    re-run is later), and so the audit chain's links (each covers the batch before, its
    time too)."""
    link = audit.HASH_BYTES
    return {
        **d,
        "audit_links": [
            (k, v[:4] + b"\0" * 4 + v[8:-link] + b"\0" * link) for k, v in d["audit_links"]
        ],
        "changes": [(k, b"\0" * 8 + v[8:]) for k, v in d["changes"]],
    }


def test_registry_databases_exist(store: Store) -> None:
    """A writable store has every registry sub-database."""
    assert set(store.dbs) == set(REGISTRY_DBS)
    assert all(db is not None for db in store.dbs.values())


def test_unknown_columns_are_ignored_with_a_warning(store: Store, run: Importer) -> None:
    """An extra column is ignored and named in a warning."""
    text = csv_text(HEADER + ",colour", *(r + ",red" for r in rows(2)))
    summary = run("manufacturer", text)
    assert summary.added == 2
    assert summary.warnings == ["ignored unknown column(s): colour"]


def test_columns_may_come_in_any_order(store: Store, run: Importer) -> None:
    """Columns are found by name."""
    text = csv_text(
        "produced_at,maker_id,tpp_number,model,brand,imei", f"2024-01-01,M,T,N1,B,{imei(5)}"
    )
    assert run("manufacturer", text).added == 1


def test_missing_column_is_a_format_error(store: Store, run: Importer) -> None:
    """A header without a required column refuses the file, naming the column."""
    with pytest.raises(FeedFormatError, match="tpp_number missing"):
        run("manufacturer", csv_text("imei,brand,model,maker_id,produced_at", "1,2,3,4,5"))


def test_not_utf8_is_a_format_error(store: Store, tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused whole with the offending byte."""
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "\n" + rows(1)[0].replace("Nusantara", "Caf\xe9")).encode("latin-1"))
    with pytest.raises(FeedFormatError, match="not UTF-8"):
        import_file(store, Kind.MANUFACTURER, path, actor=ACTOR)
    assert store.device_count() == 0


def test_jsonl_imports_like_csv(store: Store, run: Importer) -> None:
    """JSON Lines with the same field names gives the same result as CSV."""
    fields = HEADER.split(",")
    lines = [json.dumps(dict(zip(fields, r.split(","), strict=True))) for r in rows(3)]
    lines.append(
        '{"imei": 352099001761481, "brand": "B", "model": "M", "tpp_number": "T", '
        '"maker_id": "X", "produced_at": "2024-01-01", "extra": 1}'
    )
    lines.append("[1, 2]")
    lines.append("{not json")
    summary = run("manufacturer", "\n".join(lines) + "\n", name="m.jsonl", max_bad_ratio=0.5)
    assert summary.format == "jsonl"
    assert summary.added == 4
    assert summary.rejected == {"malformed_row": 2}
    assert store.get(parse("352099001761481").key) is not None
    assert any("extra" in w for w in summary.warnings)


def test_empty_file_imports_nothing(store: Store, run: Importer) -> None:
    """A header without rows is a successful import of nothing."""
    summary = run("manufacturer", HEADER + "\n")
    assert (summary.state, summary.rows) == ("done", 0)


def test_same_file_with_other_rules_is_a_new_import(store: Store, run: Importer) -> None:
    """Only the same bytes, kind and rules are a no-op; another rule imports again."""
    text = csv_text(HEADER, *rows(3))
    run("manufacturer", text, name="a.csv")
    assert run("manufacturer", text, name="a.csv", batch_rows=2).state == "already-imported"
    other = run("manufacturer", text, name="a.csv", allow_unknown_tac=True)
    assert (other.state, other.unchanged) == ("done", 3)


def test_resume_keeps_the_first_runs_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed import (same rules, another batch size) keeps the first run's options."""
    text = csv_text(HEADER, *rows(6, 100), "352099001761482,B,M,T,X,2024-01-01", *rows(3))
    path = tmp_path / "m.csv"
    path.write_text(text)
    with open_store(tmp_path / "db") as store:
        store.put_tacs([TacInfo("35209900", "Nusantara", "N1", "Smartphone")])
        first = Options(batch_rows=4, max_bad_ratio=0.2)
        with monkeypatch.context() as m:
            _crashing(m, 1)
            with pytest.raises(KeyboardInterrupt):
                import_file(store, Kind.MANUFACTURER, path, actor=ACTOR, options=first)
        again = Options(batch_rows=1000, max_bad_ratio=0.2)
        done = import_file(store, Kind.MANUFACTURER, path, actor=ACTOR, options=again)
        assert (done.state, done.added, done.rejected) == ("done", 9, {"bad_imei": 1})
        info = audit.get_origin(store, done.origin)
        assert info is not None
        assert info["options"]["batch_rows"] == 4
        assert done.origin == 1
