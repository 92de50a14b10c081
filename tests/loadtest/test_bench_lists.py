"""``./scripts/bench-lists`` at a small size: it prints every step against the bare scan."""

from __future__ import annotations

import pytest

from loadtest.bench_lists import main


def test_bench_lists_prints_each_step_with_its_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    """Four steps, each with its rows: the scan all devices, the blacklist the blocked ones,
    the second export as many after 50 blocks lifted and 50 made."""
    main(["--devices", "3000", "--blacklisted", "1000", "--changes", "50"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "fill: 3,000 devices, 1,000 blocked in " + lines[0].split(" in ")[1]
    table = {line[:30].strip(): line[30:].split() for line in lines[2:]}
    assert list(table) == [
        "bare cursor scan of devices",
        "take the blacklist",
        "export, full only",
        "export, full + deltas",
    ]
    assert [row[1] for row in table.values()] == ["3,000", "1,000", "1,000", "1,000"]
    assert table["bare cursor scan of devices"][3] == "1.0"
