"""``ceir lists export`` and ``ceir lists runs`` as an operator types them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ceir.cli.app import main
from ceir.store import demo, open_store


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "db"
    with open_store(path) as store:
        demo.load(store)
    return path


def test_export_prints_the_run_and_writes_the_files(db: Path, tmp_path: Path) -> None:
    """Two exports, the second against the first: one line each naming the run, the
    files in --out, and `ceir lists runs` lists both."""
    out = tmp_path / "lists"
    first = invoke("lists", "export", "--db", str(db), "--out", str(out))
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("list run 1: 2 files ")
    assert first.stdout.endswith("(blacklist 2)\n")
    second = invoke("lists", "export", "--db", str(db), "--out", str(out / "2"), "--base", "1")
    assert second.exit_code == 0, second.output
    assert second.stdout.startswith("list run 2 against run 1: 5 files ")
    assert len(list((out / "2").glob("*_blacklist_delta_1_2_*.csv"))) == 3
    listed = invoke("lists", "runs", "--db", str(db))
    lines = listed.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2"]
    assert lines[1].endswith("done base 1\tblacklist 2")


def test_unknown_base_exits_2_with_one_line(db: Path, tmp_path: Path) -> None:
    """--base of no recorded run: exit 2, one line naming the runs there are."""
    invoke("lists", "export", "--db", str(db), "--out", str(tmp_path / "a"))
    result = invoke("lists", "export", "--db", str(db), "--out", str(tmp_path / "b"), "--base", "9")
    assert result.exit_code == 2
    assert result.stderr == (
        "ceir: --base 9: no finished list export has that run id (the runs recorded are 1); "
        "give one of them, or no --base for full lists only\n"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_unwritable_out_exits_6_with_one_line(db: Path, tmp_path: Path) -> None:
    """An --out that cannot be written: exit 6, one line, no run recorded."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = invoke("lists", "export", "--db", str(db), "--out", str(locked))
    assert result.exit_code == 6
    assert result.stderr == (
        f"ceir: cannot write in the output directory {locked}: permission denied\n"
    )
    assert invoke("lists", "runs", "--db", str(db)).stdout == ""


@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_out_that_is_no_directory_exits_6_with_one_line(
    db: Path, tmp_path: Path, where: str
) -> None:
    """An --out naming a file, or below one: exit 6, one line (these hold for root too)."""
    (tmp_path / "file").write_text("x")
    out = tmp_path / where
    result = invoke("lists", "export", "--db", str(db), "--out", str(out))
    assert result.exit_code == 6
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"ceir: cannot make the output directory {out}: ")
    assert (tmp_path / "file").read_text() == "x"


def test_missing_store_exits_5(tmp_path: Path) -> None:
    """A --db with no store: exit 5, nothing made."""
    result = invoke("lists", "export", "--db", str(tmp_path / "nope"), "--out", str(tmp_path))
    assert result.exit_code == 5
    assert not (tmp_path / "nope").exists()
