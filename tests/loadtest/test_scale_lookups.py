"""loadtest.scale_lookups: hot-table-only stores hold the generator's devices, packed,
and the comparison in turns measures every store and form."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceir.feeds.gen import device_imei
from ceir.store import open_store
from ceir.store.compact import devices_slack
from loadtest import scale_lookups


def test_a_hot_store_holds_the_generators_devices_packed(tmp_path: Path) -> None:
    db = tmp_path / "hot"
    scale_lookups.hot_store(db, 5_000)
    start = scale_lookups.BASE
    with open_store(db, readonly=True) as store:
        assert store.device_count() == 5_000
        assert devices_slack(store) < 1.05  # every leaf page full
        for i in (start, start + 1, start + 4_999):
            assert store.get(int(device_imei(i)[:14]).to_bytes(8, "big")) is not None
        assert store.get(int(device_imei(start + 5_000)[:14]).to_bytes(8, "big")) is None
    scale_lookups.hot_store(db, 5_000)  # reused as it is
    with open_store(db, readonly=True) as store:
        assert store.device_count() == 5_000


def test_the_comparison_measures_every_store_in_turns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--sizes", "1000,4000", "--dir", str(tmp_path / "hot"), "--lookups", "2000"]
    scale_lookups.main([*argv, "--seconds", "0.2", "--rounds", "2", "--batch", "200"])
    printed = capsys.readouterr()
    assert printed.err.count("compare turn") == 4
    rows = [line for line in printed.out.splitlines() if " devices: " in line]
    assert [line.split()[0] for line in rows] == ["1,000", "4,000"]
    for line in rows:
        for form in scale_lookups.FORMS:
            assert f"{form} " in line
    assert "floor 1.00x (by CPU 1.00x), batch 1.00x (by CPU 1.00x)" in rows[0]
    assert not (tmp_path / "hot").exists()  # no --keep
