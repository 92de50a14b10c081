"""`ceir import --stage-lost-stolen-above`: the lost-stolen threshold, as on `ceir serve`."""

from __future__ import annotations

import time
from pathlib import Path

import click
from click.testing import CliRunner

from ceir.cli.app import EXIT_STAGED, main
from ceir.config import DEFAULT_STAGE_LOST_STOLEN_ABOVE
from ceir.imei import check_digit, parse
from ceir.policy import Policy
from ceir.record import Status
from ceir.store import TacInfo, open_store

TAC = "35209900"


def _imeis(n: int) -> list[str]:
    bodies = [f"{TAC}{700_000 + i:06d}" for i in range(n)]
    return [f"{b}{check_digit(b)}" for b in bodies]


def _register(tmp_path: Path, devices: list[str]) -> tuple[Path, Path]:
    db = tmp_path / "db"
    with open_store(db) as s:
        s.put_tacs([TacInfo(TAC, "Nusantara", "N1", "Smartphone")])
    made = tmp_path / "made.csv"
    made.write_text(
        "imei,brand,model,tpp_number,maker_id,produced_at\n"
        + "".join(f"{i},Nusantara,N1,TPP-1,M1,2025-01-01\n" for i in devices)
    )
    done = CliRunner().invoke(main, ["import", "manufacturer", str(made), "--db", str(db),
                                     "-q", "--stage-above", "0"])  # fmt: skip
    assert done.exit_code == 0, done.output
    stolen = tmp_path / "stolen.csv"
    stolen.write_text(
        "imei,report_ref,action,reported_at\n"
        + "".join(f"{i},POLRI/{n},BLOCK,2025-05-01\n" for n, i in enumerate(devices))
    )
    return db, stolen


def _blocked(db: Path, devices: list[str]) -> int:
    with open_store(db, readonly=True) as store:
        records = [store.get(parse(i).key) for i in devices]
    now = time.time()
    return sum(Policy().decide(r, now).status is Status.BLACKLISTED for r in records)


def test_import_default_is_the_one_constant() -> None:
    command = main.commands["import"]
    assert isinstance(command, click.Command)
    (param,) = [p for p in command.params if p.name == "stage_lost_stolen_above"]
    assert param.default == DEFAULT_STAGE_LOST_STOLEN_ABOVE


def test_lost_stolen_above_the_threshold_is_staged(tmp_path: Path) -> None:
    devices = _imeis(12)
    db, stolen = _register(tmp_path, devices)
    args = ["import", "lost-stolen", str(stolen), "--db", str(db), "-q", "--stage-above", "0"]
    staged = CliRunner().invoke(main, [*args, "--stage-lost-stolen-above", "5"])
    assert staged.exit_code == EXIT_STAGED, staged.output
    assert "stage 1" in staged.output
    assert _blocked(db, devices) == 0
    # The environment sets the same threshold (the loadtest test relies on it).
    env = CliRunner(env={"CEIR_STAGE_LOST_STOLEN_ABOVE": "5"}).invoke(main, args)
    assert env.exit_code == EXIT_STAGED, env.output


def test_zero_with_stage_above_zero_never_stages(tmp_path: Path) -> None:
    """A local trusted import (the load test's own register) writes a mass blacklisting."""
    devices = _imeis(12)
    db, stolen = _register(tmp_path, devices)
    done = CliRunner(env={"CEIR_STAGE_LOST_STOLEN_ABOVE": "5"}).invoke(
        main,
        ["import", "lost-stolen", str(stolen), "--db", str(db), "-q",
         "--stage-above", "0", "--stage-lost-stolen-above", "0"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert _blocked(db, devices) == 12
