"""bench-scale at a small N: every figure it prints is measured, and the store holds N."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import scale


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
    with scale.open_store(tmp_path / "work" / "store", readonly=True) as store:
        assert store.device_count() == 2500
    printed = capsys.readouterr().out
    assert "bench-scale: 2,500 devices" in printed
    assert "compacted by `ceir backup`" in printed
