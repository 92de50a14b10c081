"""Demo writes go through the audit log like any other (issue 10 §4)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ceir.cli.app import main
from ceir.imei import parse
from ceir.store import audit, demo, open_store
from ceir.store.backup import verify

NOW = 1_790_000_000


def test_every_demo_device_has_an_audit_entry_naming_the_demo(tmp_path: Path) -> None:
    with open_store(tmp_path / "db") as store:
        n = demo.load(store, now=NOW)
        stored = [d for d in demo.devices(NOW) if d.record is not None]
        assert n == len(stored)
        for d in stored:
            history = audit.history(store, parse(d.imei).key)
            assert history, d.note
            assert history[-1].new == d.record, d.note
            assert history[-1].at == NOW
            origin = audit.get_origin(store, history[-1].origin)
            assert origin is not None
            assert (origin["kind"], origin["actor"]) == ("demo", demo.ACTOR)
        stolen = next(d for d in stored if d.record is not None and d.record.lost_stolen)
        actions = [e.action for e in audit.history(store, parse(stolen.imei).key)]
        assert actions == [audit.Action.MANUFACTURER, audit.Action.BLOCK]
    assert verify(tmp_path / "db").ok  # the demo entries keep the chain whole


def test_ceir_audit_shows_the_demo_origin(tmp_path: Path) -> None:
    with open_store(tmp_path / "db") as store:
        demo.load(store, now=NOW)
    visitor = next(d for d in demo.devices(NOW) if d.note == "a visitor's phone, temporary")
    result = CliRunner().invoke(main, ["audit", visitor.imei, "--db", str(tmp_path / "db")])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("  #")]
    assert "visitor none -> TEMPORARY/OPERATOR" in line
    assert f"by {demo.ACTOR}" in line
    assert "demo data)" in line
