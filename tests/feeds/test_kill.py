"""An import killed with SIGKILL at any point, then run again, ends as one run would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, generate
from ceir.feeds.importer import import_file
from ceir.store import Store, audit, open_store

from .conftest import ACTOR
from .test_importer import _without_time, dump

ROWS = 24_000
BATCH = 1_000


def _ceir(*args: str) -> subprocess.Popen[bytes]:
    code = "import sys; from ceir.cli import run; sys.argv[0] = 'ceir'; run()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _prepared(path: Path, tacs: Path) -> Store:
    store = open_store(path)
    import_file(store, Kind.TAC, tacs, actor=ACTOR)
    return store


def _progress(db: Path) -> int:
    """Rows committed by the running import (0 before its first batch)."""
    if not (db / "data.mdb").exists():
        return 0
    with open_store(db, readonly=True) as store:
        info = audit.get_origin(store, 2)
        return 0 if info is None else int(info["rows_done"])


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("kill")
    tacs, maker = tmp / "tac.csv", tmp / "maker.csv"
    generate(Kind.TAC, POOL, tacs)
    generate(Kind.MANUFACTURER, ROWS, maker, dirt=0.02, seed=11)
    return tacs, maker


@pytest.mark.parametrize("kill_after_rows", [0, 5_000, 17_000])
def test_sigkill_mid_import_then_rerun_equals_one_run(
    tmp_path: Path, feeds: tuple[Path, Path], kill_after_rows: int
) -> None:
    """SIGKILL during the check pass or mid-write; the re-run ends in the clean run's state."""
    tacs, maker = feeds
    options = Options(batch_rows=BATCH)
    with _prepared(tmp_path / "clean", tacs) as clean:
        expected = import_file(clean, Kind.MANUFACTURER, maker, actor=ACTOR, options=options)
        want = _without_time(dump(clean))
    db = tmp_path / "killed"
    _prepared(db, tacs).close()
    report = str(tmp_path / "rejects.csv")
    args = ("import", "manufacturer", str(maker), "--db", str(db), "-q", "--batch-rows", str(BATCH))
    args = (*args, "--rejects", report)
    proc = _ceir(*args)
    deadline = time.monotonic() + 60
    while _progress(db) < kill_after_rows and proc.poll() is None:
        assert time.monotonic() < deadline, "the import made no progress"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the import ended before it could be killed"
    killed_at = _progress(db)
    assert killed_at < ROWS
    if kill_after_rows:
        assert killed_at >= kill_after_rows
    rerun = _ceir(*args)
    _out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    with open_store(db) as store:
        assert _without_time(dump(store)) == want
        info = audit.get_origin(store, 2)
        assert info is not None
        assert info["counts"]["added"] == expected.added
        assert info["counts"]["rejected"] == expected.rejected
