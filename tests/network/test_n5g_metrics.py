"""The N5g-eir face counts its requests and answers on the shared metrics (face="n5g-eir")."""

from __future__ import annotations

from pathlib import Path

import httpx

from ceir import metrics
from ceir.config import Settings
from ceir.store import Store, demo
from tests.network._faces import running_faces


def _count(name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_requests_and_answers_are_counted(store: Store, tmp_path: Path) -> None:
    """Two lookups of a stolen phone and one bad query: three GetEquipmentStatus calls,
    two BLACKLISTED/LOST_STOLEN answers."""
    demo.load(store)
    calls = ("ceir_request_duration_seconds_count", {"face": "n5g-eir"})
    stolen = ("ceir_answers_total", {"face": "n5g-eir", "reason": "LOST_STOLEN"})
    before = [_count(n, **labels) for n, labels in (calls, stolen)]
    settings = Settings(db=tmp_path / "unused", sbi="127.0.0.1:0")
    with running_faces(settings, store) as running, httpx.Client(http2=True, http1=False) as c:
        for query in ("pei=imei-352099001761499", "pei=imei-352099001761499", "pei=bogus"):
            c.get(f"{running.url}?{query}", timeout=10)
    after = [_count(n, **labels) for n, labels in (calls, stolen)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 2]
