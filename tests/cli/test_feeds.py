"""``ceir import``, ``ceir gen`` and ``ceir audit``: exact output and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ceir.cli.app import EXIT_FEED, main
from ceir.feeds.gen import device_imei

HEADER = "imei,brand,model,tpp_number,maker_id,produced_at"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_import_prints_summary_and_report(cli: CliRunner, tmp_path: Path) -> None:
    """`ceir import` prints one summary line, the report path and the first rejects; exit 0."""
    db = str(tmp_path / "db")
    assert cli.invoke(main, ["gen", "tac", "tac.csv", "--rows", "500", "-q"]).exit_code == 0
    result = cli.invoke(main, ["import", "tac", "tac.csv", "--db", db, "--create", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("imported tac tac.csv: 500 rows; 500 accepted (500 new TACs")
    rows = [f"{device_imei(i)},B,M,T,X,2024-01-01" for i in range(40)]
    rows.append(f"{device_imei(1)[:14]}0,B,M,T,X,2024-01-01")
    Path("m.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    result = cli.invoke(main, ["import", "manufacturer", "m.csv", "--db", db, "--create"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(
        "imported manufacturer m.csv: 41 rows; 40 accepted (40 new devices, 0 changed); "
        "0 unchanged; 1 rejected (1 bad_imei); "
    )
    assert lines[1] == "reject report: m.csv.rejects.csv"
    assert lines[2].startswith("  line 42: bad_imei: imei ")
    assert Path("m.csv.rejects.csv").read_text().startswith("file,line,field,reason,message,fix\n")
    again = cli.invoke(main, ["import", "manufacturer", "m.csv", "--db", db, "--create"])
    assert again.exit_code == 0
    assert "was already imported as import #2 (manufacturer" in again.output


def test_refused_import_exits_7(cli: CliRunner, tmp_path: Path) -> None:
    """A refused file exits 7 with the reason on stderr."""
    rows = [f"{device_imei(i)},B,M,T,X,2024-01-01" for i in range(5)]
    Path("m.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    result = cli.invoke(
        main, ["import", "manufacturer", "m.csv", "--db", str(tmp_path / "db"), "--create", "-q"]
    )
    assert result.exit_code == EXIT_FEED
    assert "are malformed, above the limit of 5%; nothing was imported" in result.output


def test_unreadable_file_exits_7(cli: CliRunner, tmp_path: Path) -> None:
    """A missing file exits 7 and says so."""
    result = cli.invoke(
        main, ["import", "tac", "nope.csv", "--db", str(tmp_path / "db"), "--create"]
    )
    assert result.exit_code == EXIT_FEED
    assert "no feed file at nope.csv" in result.output


def test_audit_prints_history(cli: CliRunner, tmp_path: Path) -> None:
    """`ceir audit IMEI` prints the record, details and each change with its origin."""
    db = str(tmp_path / "db")
    cli.invoke(main, ["gen", "tac", "tac.csv", "--rows", "500", "-q"])
    cli.invoke(main, ["import", "tac", "tac.csv", "--db", db, "--create", "-q"])
    imei = device_imei(0)
    Path("m.csv").write_text(f"{HEADER}\n{imei},Samsung,A10,TPP-9,M9,2024-01-01\n")
    Path("l.csv").write_text(
        f"imei,report_ref,action,reported_at\n{imei},POLRI/1,BLOCK,2024-05-01\n"
    )
    cli.invoke(main, ["import", "manufacturer", "m.csv", "--db", db, "--create", "-q"])
    cli.invoke(main, ["import", "lost-stolen", "l.csv", "--db", db, "--create", "-q"])
    result = cli.invoke(main, ["audit", imei, "--db", db])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"IMEI     {imei}"
    assert lines[1] == "Now      BLACKLISTED / LOST_STOLEN / source MANUFACTURER"
    assert "Details  manufacturer: brand=Samsung, model=A10, tpp_number=TPP-9" in result.output
    assert "         lost-stolen: report_ref=POLRI/1, reported_at=2024-05-01" in result.output
    assert lines[-2].endswith("(import #2, m.csv line 2)")
    assert " manufacturer none -> REGISTERED/MANUFACTURER by local:" in lines[-2]
    assert " block REGISTERED/MANUFACTURER -> REGISTERED/MANUFACTURER+LOST_STOLEN " in lines[-1]


def test_every_feed_command_has_help(cli: CliRunner) -> None:
    """import, gen and audit answer --help."""
    for command in ("import", "gen", "audit"):
        result = cli.invoke(main, [command, "--help"])
        assert result.exit_code == 0
        assert "Usage: main " + command in result.output or "Usage: " in result.output


def test_progress_bar_shows_rows_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    """On a terminal the bar names the phase and its rate in rows/s; disabled it is silent."""
    from ceir.cli.feeds import BarProgress

    bar = BarProgress(enabled=True)
    bar.phase("importing", 1000)
    bar.advance(1000)
    bar.close()
    shown = capsys.readouterr().err
    assert "importing" in shown
    assert "rows/s" in shown
    quiet = BarProgress(enabled=False)
    quiet.phase("importing", 1000)
    quiet.advance(1000)
    quiet.close()
    assert capsys.readouterr().err == ""


def test_quiet_import_prints_the_summary_only(cli: CliRunner, tmp_path: Path) -> None:
    """--quiet: no warnings, no reject lines, one summary line and the report path."""
    text = "tac,brand,model,device_type,colour\n" + "".join(
        f"8600{i:04d}, Brand ,M,Phone,red\n" for i in range(30)
    )
    Path("t.csv").write_text(text + "123,B,M,P,red\n")
    db = str(tmp_path / "db")
    result = cli.invoke(main, ["import", "tac", "t.csv", "--db", db, "--create", "-q"])
    assert result.exit_code == 0
    assert result.output.splitlines()[1:] == ["reject report: t.csv.rejects.csv"]
    Path("u.csv").write_text(text.replace("8600", "8700"))
    loud = cli.invoke(main, ["import", "tac", "u.csv", "--db", db, "--create"])
    assert "warning: u.csv: ignored unknown column(s): colour" in loud.output
    assert "warning: u.csv: trimmed surrounding spaces in 30 field(s)" in loud.output
