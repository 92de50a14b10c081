"""The TAC feed: the real Osmocom TAC database with its dirt, GSMA pipe files, CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ceir.feeds import Format, Kind
from ceir.feeds.importer import import_file
from ceir.feeds.reader import detect_format
from ceir.store import Store

from .conftest import ACTOR, Importer

# The real Osmocom TAC DB (CC-BY-SA) lives beside the checkout, not in the repository.
OSMOCOM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "osmocom-tacdb.csv"


@pytest.fixture
def osmocom() -> Path:
    """The real TAC database; its tests skip where ../shared/data is absent (a fresh clone)."""
    if not OSMOCOM.exists():
        pytest.skip(f"the real TAC database is not at {OSMOCOM}")
    return OSMOCOM


def _raw_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))[2:]


def test_real_osmocom_db_imports_with_its_dirt_reported(
    store: Store, osmocom: Path, tmp_path: Path
) -> None:
    """Every 8-digit TAC is imported; each 7-digit, spaced or short TAC is a reported reject."""
    raw = _raw_rows(osmocom)
    eight = [r for r in raw if len(r[0]) == 8 and r[0].isdigit()]
    seven = [r for r in raw if len(r[0]) == 7 and r[0].isdigit()]
    report = tmp_path / "rejects.csv"
    summary = import_file(store, Kind.TAC, osmocom, actor=ACTOR, report=report)
    assert summary.format == "osmocom"
    assert summary.rows == len(raw) == 25_175
    # The fixture store already holds 35209900, which the database lists too.
    assert summary.accepted + summary.unchanged == len(eight) == 24_391
    assert summary.rejected == {"lost_leading_zero": 779, "bad_tac": 5}
    assert len(seven) == 779
    assert store.tac_count() == 24_391
    with report.open(encoding="utf-8", newline="") as f:
        rejects = list(csv.DictReader(f))
    assert len(rejects) == 784
    by_tac = {r["message"].split("'")[1]: r for r in rejects}
    assert all(by_tac[r[0]]["fix"] == "0" + r[0] for r in seven)
    assert by_tac[" 35572302"]["fix"] == "35572302"
    assert by_tac["106600"]["fix"] == ""
    assert summary.trimmed > 0  # " Apple", " iPhone 4S (A1387)": trimmed and counted


def test_osmocom_quoted_commas_and_trimmed_names(store: Store, osmocom: Path) -> None:
    """Quoted fields with commas do not shift columns; spaces around names are trimmed."""
    import_file(store, Kind.TAC, osmocom, actor=ACTOR)
    nokia = store.tac("49013920")  # its aka column is "1610+,1611,1611+,NHE-5NX"
    assert nokia is not None
    assert (nokia.brand, nokia.model) == ("Nokia", "1610")
    spaced = [r for r in _raw_rows(osmocom) if len(r[0]) == 8 and r[1].startswith(" ")]
    assert spaced
    info = store.tac(spaced[0][0])
    assert info is not None
    assert info.brand == spaced[0][1].strip()


def test_fix_leading_zero_pads_and_counts(store: Store, osmocom: Path) -> None:
    """--fix-leading-zero pads 7-digit TACs, counts them, and reports the collisions it makes."""
    from ceir.feeds.base import Options

    summary = import_file(
        store, Kind.TAC, osmocom, actor=ACTOR, options=Options(fix_leading_zero=True)
    )
    assert summary.fixed == 779
    raw = _raw_rows(osmocom)
    eight = {r[0] for r in raw if len(r[0]) == 8}
    collisions = sum(1 for r in raw if len(r[0]) == 7 and "0" + r[0] in eight)
    assert summary.rejected.get("duplicate", 0) == collisions > 0
    assert summary.accepted + summary.unchanged == 24_391 + 779 - collisions
    apple = store.tac("01130000")
    assert apple is not None
    assert apple.model == "iPhone 4"


def test_gsma_pipe_file_is_detected(store: Store, run: Importer, tmp_path: Path) -> None:
    """A GSMA-style pipe file (with its header names) is detected and imported."""
    text = (
        "tac|manufacturer|bands|brand_name|model_name|device_type|os\n"
        "35332811|Apple Inc|GSM|Apple|iPhone 12|Smartphone|iOS\n"
        "86012345|Garuda|LTE|Garuda|Tab 10|Tablet|Android\n"
    )
    summary = run("tac", text, name="gsma.txt")
    assert (summary.format, summary.added) == ("gsma", 2)
    info = store.tac("35332811")
    assert info is not None
    assert (info.brand, info.model, info.device_type) == ("Apple", "iPhone 12", "Smartphone")


def test_gsma_pipe_without_header(store: Store, run: Importer) -> None:
    """Without a header the pipe columns are tac|brand|model|device_type."""
    summary = run("tac", "35332811|Apple|iPhone 12|Smartphone|x\n", name="g.txt")
    assert (summary.format, summary.added) == ("gsma", 1)


def test_tac_changes_and_unchanged(store: Store, run: Importer) -> None:
    """Importing a TAC again is unchanged; with another model it is changed."""
    header = "tac,brand,model,device_type"
    run("tac", f"{header}\n86000001,A,M1,Phone\n86000002,A,M2,Phone\n")
    summary = run("tac", f"{header}\n86000001,A,M1,Phone\n86000002,A,M3,Phone\n")
    assert (summary.unchanged, summary.changed) == (1, 1)


def test_duplicate_tac_row_is_reported_in_the_tac_field(store: Store, run: Importer) -> None:
    """A TAC repeated in one file is rejected on its second row with field ``tac``, not ``imei``."""
    rows = [f"{86012300 + i},Garuda,Tab {i}" for i in range(30)]
    text = "\n".join(["tac,brand,model", *rows, "86012303,Garuda,Again"]) + "\n"
    summary = run("tac", text)
    assert summary.rejected == {"duplicate": 1}
    (reject,) = summary.first_rejects
    assert (reject.line, reject.field, reject.reason) == (32, "tac", "duplicate")


def test_detect_format(tmp_path: Path) -> None:
    """Formats are detected from the extension and the first lines."""
    cases = {
        "a.jsonl": '{"tac": "1"}\n',
        "b.csv": "tac,brand,model\n",
        "c.csv": "Osmocom banner\ntac,name,name,contributor\n",
        "d.txt": "tac|brand|model\n",
        "e.txt": '{"imei": "1"}\n',
    }
    want = {
        "a.jsonl": Format.JSONL,
        "b.csv": Format.CSV,
        "c.csv": Format.OSMOCOM,
        "d.txt": Format.GSMA,
        "e.txt": Format.JSONL,
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert detect_format(tmp_path / name, Kind.TAC) is want[name], name
