"""Sightings past retention: deleted by ``ceir purge`` (``--observation-days``, default 180).

A sighting whose SIM was last seen with the device more than the retention ago is
dropped; a device left without sightings loses its row; at a replica, a sealed IMSI no
sighting names any more is deleted from the vault. Clone states and pairs stay: they are
decisions, audited, and a principal undoes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ceir.store import Store
from ceir.store.clonetables import Sighting
from ceir.store.tables import Tables

__all__ = ["SightingsPurged", "purge_sightings"]

_BATCH = 10_000
_Row = tuple[bytes, int, list[Sighting]]


@dataclass(frozen=True, slots=True)
class SightingsPurged:
    sightings: int
    devices: int
    sealed: int

    def line(self) -> str:
        return (
            f"purged {self.sightings} sightings ({self.devices} devices no longer seen), "
            f"{self.sealed} sealed IMSIs"
        )


def purge_sightings(store: Store, *, now: int, days: int) -> SightingsPurged:
    """Delete sightings last seen before *now* - *days*; batches of write transactions."""
    since = now // 60 - days * 1440
    with store.snapshot() as tables:
        victims = [
            (key, dropped, sightings)
            for key, dropped, sightings in tables.observations.items()
            if any(s.last_min < since for s in sightings)
        ]
    removed = emptied = 0
    for i in range(0, len(victims), _BATCH):
        batch = victims[i : i + _BATCH]

        def run(tables: Tables, batch: list[_Row] = batch) -> tuple[int, int]:
            n = gone = 0
            for key, _dropped, _old in batch:
                dropped, current = tables.observations.get(key)
                kept = [s for s in current if s.last_min >= since]
                n += len(current) - len(kept)
                gone += not kept
                tables.observations.put(key, dropped if kept else 0, kept)
            return n, gone

        n, gone = store.write(run)
        removed += n
        emptied += gone

    def vault(tables: Tables) -> int:
        named = {s.token for _k, _d, sightings in tables.observations.items() for s in sightings}
        stale = [t for t in tables.vault.tokens() if t not in named]
        for token in stale:
            tables.vault.delete(token)
        return len(stale)

    return SightingsPurged(removed, emptied, store.write(vault))
