"""The S13 face counts its ECRs and answers on the shared metrics (face="s13")."""

from __future__ import annotations

import asyncio
import time

from ceir import metrics
from ceir.store import Store, demo
from loadtest.diameter import S13Client
from tests.network._s13 import face


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
