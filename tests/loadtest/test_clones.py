"""The clone scenario, small: five replicas, the central and a real nats-server, four
simulated days. Full figures: ``./scripts/bench-clones``."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from ceir.clones.recorder import DeviceDay
from ceir.clones.upstream import Ingestor, open_sightings, seal_sightings
from ceir.errors import RefusedMessageError
from ceir.replication.broker import Broker
from ceir.replication.keys import generate, load_signing_key, load_verify_key
from ceir.store.clonetables import Sighting, operator_code
from loadtest.clones import OPERATORS, Population, ScenarioConfig, imsi, run

pytestmark = pytest.mark.timeout(180)


def test_small_scenario_detects_every_clone_and_refuses_no_owner(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 devices, 1% cloned on other operators' SIMs, 0.5% moving to a new SIM: every
    clone flagged and only clones (precision and recall 1), no paired owner refused, every
    clone SIM refused after the grace, GREYLISTED on every replica within seconds; no IMSI
    in the central's store file or in any log line, none in clear in a replica's store."""
    caplog.set_level(logging.DEBUG)
    cfg = ScenarioConfig(devices=2000, days=4, grace_days=2)
    result = run(tmp_path, cfg, log=lambda line: None)
    assert result.cloned == 20
    assert (result.precision, result.recall) == (1.0, 1.0)
    assert result.owners_refused == 0
    assert result.owners_checked == cfg.devices * (cfg.days + 1)
    assert result.clone_sims_refused == result.clone_sims_checked > 0
    assert len(result.greylist_seconds) == result.cloned
    assert max(result.greylist_seconds) < 30
    pop = Population.make(cfg)
    used = [imsi(OPERATORS[pop.owner_op[i]], i) for i in range(cfg.devices)]
    used += [s for sims in pop.cloned.values() for _op, s in sims]
    used += [s for _op, s in pop.switched.values()]
    central = (tmp_path / "central" / "data.mdb").read_bytes()
    assert [s for s in used if s.encode() in central] == []
    assert [s for s in used if s in caplog.text] == []
    for op in OPERATORS:
        held = (tmp_path / op / "data.mdb").read_bytes()
        assert [s for s in used if s.encode() in held] == []


def test_a_rogue_publisher_cannot_fake_sightings(tmp_path: Path) -> None:
    """A message signed with another key, naming another operator than its subject, or
    truncated is refused: nothing of it reaches the detector."""
    private, public = generate(tmp_path / "k")
    rogue, _ = generate(tmp_path / "r")
    key, rogue_key = load_signing_key(private), load_signing_key(rogue)
    op = operator_code("510-10")
    day = [DeviceDay(b"\x00" * 8, 1, 1, (Sighting(b"t" * 16, op, op, 5, 6),))]
    good = seal_sightings(key, op, day, 0)
    assert open_sightings(load_verify_key(public), good).days == tuple(day)
    ingest = Ingestor(Broker("nats://127.0.0.1:1"), {"510-10": load_verify_key(public)}, None)  # type: ignore[arg-type]
    assert len(ingest._open(SimpleNamespace(subject="ceir.observations.510-10", data=good))) == 2
    forged = seal_sightings(rogue_key, op, day, 0)
    other = seal_sightings(key, operator_code("510-11"), day, 0)
    for subject, data in [
        ("ceir.observations.510-10", forged),
        ("ceir.observations.510-10", other),
        ("ceir.observations.510-11", good),
        ("ceir.observations.510-10", good[:20] + good[-64:]),
        ("ceir.observations.510-10", b"junk"),
    ]:
        with pytest.raises(RefusedMessageError):
            ingest._open(SimpleNamespace(subject=subject, data=data))
