"""bench-scale at a small N: every figure it prints is measured, and the store holds N."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ceir.feeds.gen import POOL, device_imei, tac_entry
from loadtest import scale
from loadtest.scale_lookups import FORMS


def test_bench_scale_small_run_writes_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two stages (1,000 then 2,500 devices): result.json has the import and csv rates,
    the peak RSS, bytes per device per stage, lookup rates and the compacted size."""
    out = tmp_path / "result.json"
    scale.main(
        [
            "--devices", "2500", "--stages", "1000", "--dir", str(tmp_path / "work"),
            "--lookups", "2000", "--seconds", "0.3", "--out", str(out), "--keep",
            "--compare-at", "1000", "--rounds", "1",
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert [s["devices"] for s in result["stages"]] == [1000, 2500]
    assert [i["rows"] for i in result["imports"]] == [1000, 1500]
    assert all("1,500 new devices" in i["summary"] for i in result["imports"][1:])
    assert result["import_rows_per_s"] > 0
    assert result["csv_rows_per_s"] > result["import_rows_per_s"] * 0.01
    assert 0 < result["peak_rss_mib"] < 2048
    assert 0 < result["peak_anon_mib"] <= result["peak_rss_mib"]
    for stage in result["stages"]:
        assert 12 < stage["hot_bytes_per_device"] < stage["file_bytes"] / stage["devices"]
        assert stage["registry_bytes_per_device"] > 0
        for form in ("floor", "batch", "packed"):
            assert stage["lookups"][form]["imeis_per_s"] > 0
    assert 0 < result["compacted_bytes"] <= result["file_bytes"]
    assert result["compaction"]["file_before"] == result["file_bytes"]
    assert 12 < result["compaction"]["hot_after"] < result["compaction"]["total_after"]
    with scale.open_store(tmp_path / "work" / "store", readonly=True) as store:
        assert store.device_count() == 2500
    # The first stage's store, copied then, measured again beside the final one.
    best = result["compare"]["best"]
    assert list(best) == ["1000", "2500"]
    assert all(best[n][form]["imeis_per_s"] > 0 for n in best for form in FORMS)
    assert (tmp_path / "work" / "at-1000" / "data.mdb").exists()
    with scale.open_store(tmp_path / "work" / "at-1000", readonly=True) as store:
        assert store.device_count() == 1000
    phases = [(p["stage"], p["phase"]) for p in result["phases"]]
    for stage in (1000, 2500):
        for name in ("generate", "csv baseline", "import", "lookups"):
            assert (stage, name) in phases
    assert phases[-2:] == [(2500, "compact"), (2500, "compare")]
    assert all(p["seconds"] >= 0 for p in result["phases"])
    printed = capsys.readouterr()
    assert "bench-scale: 2,500 devices" in printed.out
    assert "after `ceir compact`" in printed.out
    assert "at 2,500 vs at 1,000: floor " in printed.out
    assert "(by CPU " in printed.out
    assert "min, " in printed.err  # progress lines carry the elapsed time


def test_generated_feed_rows_are_those_of_ceir_gen(tmp_path: Path) -> None:
    """The numpy generator writes ``device_imei``'s IMEIs with ``ceir gen``'s fields, one
    CRLF row per serial index, from any start (not only a multiple of the TAC pool)."""
    feed = tmp_path / "m.csv"
    start = 100_000_013
    scale.write_feed(feed, start, 1_234, seed=3)
    with feed.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["imei", "brand", "model", "tpp_number", "maker_id", "produced_at"]
    assert len(rows) == 1_235
    for k, row in enumerate(rows[1:]):
        j = (start + k) % POOL
        _, brand, model, _ = tac_entry(j)
        assert row[:5] == [device_imei(start + k), brand, model, f"TPP-{j:05d}", f"M{j % 97:04d}"]
        assert "2023-01-01" <= row[5] <= "2025-06-19"
    assert feed.read_bytes().count(b"\r\n") == 1_235


def test_a_stopped_run_resumes_after_its_last_stage(tmp_path: Path) -> None:
    """--resume imports only the stages a stopped run did not finish; --keep-feeds keeps
    the feeds for the next run."""
    work, out = tmp_path / "work", tmp_path / "result.json"
    common = ["--dir", str(work), "--lookups", "500", "--seconds", "0.2", "--out", str(out)]
    scale.main(["--devices", "1500", "--stages", "1000", *common, "--keep", "--keep-feeds"])
    first = json.loads(out.read_text())
    # As if stopped after the first stage: its record is what the run left then.
    (work / "stages.json").write_text(
        json.dumps({**first, "stages": first["stages"][:1], "imports": first["imports"][:1]})
    )
    with scale.open_store(work / "store") as store:  # the second stage never happened
        assert store.device_count() == 1500
    scale.main(["--devices", "1500", "--stages", "1000", *common, "--resume", "--keep"])
    again = json.loads(out.read_text())
    assert again["imports"][0] == first["imports"][0]  # not imported again
    assert len(again["imports"]) == 2
    assert "already imported" in again["imports"][1]["summary"]  # the kept feed, reused


def test_a_run_stopped_after_an_import_measures_without_importing_again(tmp_path: Path) -> None:
    """Stopped after the last stage's import was recorded but before its lookups: the
    rerun measures that stage and does not import its feed again."""
    work, out = tmp_path / "work", tmp_path / "result.json"
    common = ["--dir", str(work), "--lookups", "500", "--seconds", "0.2", "--out", str(out)]
    common += ["--compare-at", ""]
    scale.main(["--devices", "1500", "--stages", "1000", *common, "--keep"])
    first = json.loads(out.read_text())
    assert first["compare"] == {}  # no copies asked for
    (work / "stages.json").write_text(json.dumps({**first, "stages": first["stages"][:1]}))
    scale.main(["--devices", "1500", "--stages", "1000", *common, "--resume", "--keep"])
    again = json.loads(out.read_text())
    assert again["imports"] == first["imports"]  # nothing imported again
    assert [s["devices"] for s in again["stages"]] == [1000, 1500]
    assert not list(work.glob("manufacturer-*"))  # feeds go once imported (no --keep-feeds)
    assert not (work / "stages.json").exists()  # complete: nothing left to resume


def test_a_resume_of_another_store_is_refused(tmp_path: Path) -> None:
    """A record that claims more devices than the store holds stops with one line."""
    work = tmp_path / "work"
    common = ["--dir", str(work), "--lookups", "500", "--seconds", "0.2"]
    common += ["--out", str(tmp_path / "r.json"), "--compare-at", "", "--keep"]
    scale.main(["--devices", "1200", "--stages", "", *common])
    record = json.loads((tmp_path / "r.json").read_text())
    record["imports"][0]["rows"] = 5000
    (work / "stages.json").write_text(json.dumps({**record, "stages": []}))
    with pytest.raises(SystemExit, match="holds 1,200 devices"):
        scale.main(["--devices", "1200", *common, "--resume"])


def test_a_stage_that_cannot_fit_on_the_disk_stops_with_one_line(tmp_path: Path) -> None:
    free = scale.shutil.disk_usage(tmp_path).free
    with pytest.raises(SystemExit, match=r"needs at least .* GB free; free some disk"):
        scale.check_disk(tmp_path, free * 2, free * 2, "the stage")
    scale.check_disk(tmp_path, 1, 2, "the stage")  # fits: nothing said
