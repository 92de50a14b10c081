"""The S13 face counts its ECRs and answers on the shared metrics (face="s13"), each under
the operator its peer belongs to."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ceir import metrics
from ceir.config import Settings
from ceir.network.s13 import S13Options
from ceir.store import Store, demo
from loadtest.diameter import S13Client
from tests.network._s13 import Recorder, face


def _count(name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_ecrs_and_their_answers_are_counted(store: Store) -> None:
    """Three ECRs for a stolen phone: three S13 requests, three BLACKLISTED/LOST_STOLEN."""
    demo.load(store, int(time.time()))
    calls = ("ceir_request_duration_seconds_count", {"face": "s13", "method": "ECR"})
    stolen = ("ceir_answers_total", {"face": "s13", "reason": "LOST_STOLEN"})
    before = [_count(n, **labels) for n, labels in (calls, stolen)]

    async def main() -> None:
        async with face(store) as s13:
            mme = S13Client("mme.localdomain", "localdomain")
            await mme.connect("127.0.0.1", s13.port)
            for _ in range(3):
                await mme.check("35209900176149")
            await mme.close()

    asyncio.run(asyncio.wait_for(main(), 20))
    after = [_count(n, **labels) for n, labels in (calls, stolen)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 3]


def _ecrs(store: Store, mmes: list[tuple[str, str, str]], **overrides: Any) -> list[Any]:
    """Two ECRs from each (Origin-Host, Origin-Realm, IMSI) peer; the sightings made."""
    recorder = Recorder()

    async def main() -> None:
        async with face(store, observer=recorder, **overrides) as s13:
            for host, realm, imsi in mmes:
                mme = S13Client(host, realm)
                await mme.connect("127.0.0.1", s13.port)
                for _ in range(2):
                    await mme.check("35209900176148", imsi)
                await mme.close()

    asyncio.run(asyncio.wait_for(main(), 20))
    return recorder.sightings


def test_ecrs_count_under_the_peers_3gpp_realm(store: Store) -> None:
    """A peer whose Origin-Realm is epc.mnc010.mcc510.3gppnetwork.org is operator 510-10
    (the realm wins over a roaming subscriber's IMSI), on the metrics and its sightings."""
    demo.load(store, int(time.time()))
    label = {"face": "s13", "method": "ECR", "operator": "510-10"}
    before = _count("ceir_request_duration_seconds_count", **label)
    realm = "epc.mnc010.mcc510.3gppnetwork.org"
    sightings = _ecrs(store, [("mme1.telkomsel.example", realm, "525011234567890")])
    assert _count("ceir_request_duration_seconds_count", **label) - before == 2
    assert [s[2] for s in sightings] == ["510-10", "510-10"]


def test_a_configured_peer_operator_beats_its_realm(store: Store) -> None:
    """--s13-peers HOST=MCC-MNC names the operator whatever the realm says."""
    demo.load(store, int(time.time()))
    label = {"face": "s13", "method": "ECR", "operator": "510-89"}
    before = _count("ceir_request_duration_seconds_count", **label)
    mmes = [("MME.three.example", "epc.mnc010.mcc510.3gppnetwork.org", "510101234567890")]
    sightings = _ecrs(
        store,
        mmes,
        peers=frozenset({"mme.three.example"}),
        operators={"mme.three.example": "510-89"},
    )
    assert _count("ceir_request_duration_seconds_count", **label) - before == 2
    assert {s[2] for s in sightings} == {"510-89"}


def test_without_a_3gpp_realm_the_imsi_names_the_network(store: Store) -> None:
    """A peer in realm "localdomain": its ECRs count under their User-Name IMSI's MCC-MNC
    (two-digit MNCs in Indonesia, three in the US), nothing for an unreadable one; its
    sightings carry no operator (a subscriber's home is not the asking network)."""
    demo.load(store, int(time.time()))
    operators = ("510-11", "310-260", "-")
    before = [_count("ceir_request_duration_seconds_count", operator=o) for o in operators]
    peers = [
        ("mme.localdomain", "localdomain", "510111234567890"),
        ("mme2.localdomain", "localdomain", "310260123456789"),
        ("mme3.localdomain", "localdomain", "001011234567890"),
    ]
    sightings = _ecrs(store, peers)
    after = [_count("ceir_request_duration_seconds_count", operator=o) for o in operators]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2, 2]
    assert {s[2] for s in sightings} == {""}


def test_s13_peers_entries_name_hosts_and_their_operators() -> None:
    """--s13-peers HOST=MCC-MNC,HOST: both hosts admitted, the first counted under its id."""
    options = S13Options.from_settings(Settings(s13_peers=("MME1.example=510-10", "mme2.example")))
    assert options is not None
    assert options.peers == frozenset({"mme1.example", "mme2.example"})
    assert options.operators == {"mme1.example": "510-10"}
