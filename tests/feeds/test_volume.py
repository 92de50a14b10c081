"""Issue 10 §1: the two-person rule cannot be split. Rolling 24-hour counts per principal
and per channel, kept in the store, stage a file and refuse a single write that would pass
the limit, however the writes are cut up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ceir.errors import DailyLimitError
from ceir.feeds import ImportState, Kind, volume
from ceir.feeds.single import apply_one
from ceir.feeds.staging import Stage, submit
from ceir.feeds.summary import ImportSummary
from ceir.imei import parse
from ceir.store import Store
from tests.server.test_access_registry import clean_feed, imei

NOW = 1_790_000_000.0
OPS = "admin:ops"


def _file(tmp_path: Path, n: int, start: int) -> Path:
    path = tmp_path / f"m{start}.csv"
    path.write_bytes(clean_feed(Kind.MANUFACTURER, n, start=start))
    return path


def _submit(store: Store, path: Path, actor: str = OPS, now: float = NOW, **kw: Any) -> object:
    kw.setdefault("stage_above", 1_000)
    return submit(store, Kind.MANUFACTURER, path, actor=actor, clock=lambda: now, **kw)


def test_two_files_of_900_are_staged_like_one_of_1800(store: Store, tmp_path: Path) -> None:
    """The attack: 900 + 900 new devices under a threshold of 1,000. The first file goes
    through; the second would take the principal past 1,000 in 24 hours and is staged."""
    first = _submit(store, _file(tmp_path, 900, 0))
    assert isinstance(first, ImportSummary)
    assert first.state is ImportState.DONE
    second = _submit(store, _file(tmp_path, 900, 1_000))
    assert isinstance(second, Stage), second
    assert "900 devices' answers" in second.why
    assert "24 hours" in second.why
    assert store.get(parse(imei(110_000 + 1_000)).key) is None  # nothing of it written
    assert store.get(parse(imei(110_000)).key) is not None
    with store.snapshot() as tables:
        assert volume.window(tables, Kind.MANUFACTURER, OPS, NOW) == (900, 900)
    # Another principal has its own count (the channel's is far from its limit).
    other = _submit(store, _file(tmp_path, 900, 2_000), actor="manufacturer:nusantara")
    assert isinstance(other, ImportSummary)
    assert other.added == 900


def test_the_window_rolls_and_old_buckets_are_dropped(store: Store, tmp_path: Path) -> None:
    """25 hours later the first file's count has left the window: the same principal may
    import 900 again, and the hourly buckets of the old window are deleted."""
    assert isinstance(_submit(store, _file(tmp_path, 900, 0)), ImportSummary)
    assert isinstance(_submit(store, _file(tmp_path, 900, 1_000), now=NOW + 3_600), Stage)
    later = _submit(store, _file(tmp_path, 900, 1_000), now=NOW + 25 * 3_600)
    assert isinstance(later, ImportSummary)
    assert later.added == 900
    with store.snapshot() as tables:
        assert tables.volume.count() == 2  # this hour's: the principal's and the channel's
        assert volume.window(tables, Kind.MANUFACTURER, OPS, NOW + 25 * 3_600) == (900, 900)


def test_single_writes_and_files_share_the_count(store: Store, tmp_path: Path) -> None:
    """A principal near its limit through a file gets RESOURCE_EXHAUSTED-class refusals for
    single writes past it; single writes count towards the next file too."""
    limits = volume.Limits(stage_above=1_000)
    assert isinstance(_submit(store, _file(tmp_path, 998, 0)), ImportSummary)

    def register(serial: int) -> object:
        fields = {"imei": imei(120_000 + serial), "brand": "N", "model": "N1",
                  "tpp_number": "T", "maker_id": "M", "produced_at": "2025-01-01"}  # fmt: skip
        return apply_one(store, Kind.MANUFACTURER, fields, actor=OPS, request="Register",
                         clock=lambda: NOW, limits=limits)  # fmt: skip

    register(5_000)
    register(5_001)
    with pytest.raises(DailyLimitError, match=r"1,000 devices' answers .* the limit of 1,000"):
        register(5_002)
    assert store.get(parse(imei(125_002)).key) is None
    assert store.get(parse(imei(125_001)).key) is not None
    # The 1,000 reached by file + single writes stage even a one-row file.
    assert isinstance(_submit(store, _file(tmp_path, 1, 3_000)), Stage)


def test_the_channel_limit_counts_every_principal(store: Store, tmp_path: Path) -> None:
    """Three principals under their own limits, one channel over its limit: staged."""
    for i, who in enumerate(("a:1", "a:2")):
        done = _submit(store, _file(tmp_path, 400, i * 1_000), actor=who, channel_daily_above=1_000)
        assert isinstance(done, ImportSummary)
    third = _submit(store, _file(tmp_path, 400, 5_000), actor="a:3", channel_daily_above=1_000)
    assert isinstance(third, Stage)
    assert "channel (every principal) changed 800" in third.why


def test_two_tokens_of_one_person_share_one_count(store: Store, tmp_path: Path) -> None:
    """The count is the person's, not the token's: min1 and min1b are one count."""
    one = _submit(store, _file(tmp_path, 900, 0), actor="admin:min1", person="min1")
    assert isinstance(one, ImportSummary)
    two = submit(store, Kind.MANUFACTURER, _file(tmp_path, 900, 1_000), actor="admin:min1b",
                 person="min1", stage_above=1_000, clock=lambda: NOW)  # fmt: skip
    assert isinstance(two, Stage)
