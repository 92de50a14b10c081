"""What clone detection adds to one serving process: the faces' observer, the pair check,
and the background tasks (the recorder's thread; upstream publishing or ingesting).

- the central register: sightings in its own tokens (namespace 0), conditions evaluated,
  and — with ``--observation-keys`` and a broker — the operators' upstream sightings
  ingested (:mod:`ceir.clones.upstream`);
- an operator's replica: sightings in its own tokens (namespace = its operator code), its
  SIMs' IMSIs sealed in the vault, and — with ``--observations-key`` — counts and tokens
  published upstream. No conditions: the central decides, and the change log brings the
  states and pairs back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ceir.clones.actions import PairMatcher
from ceir.clones.conditions import DEFAULT_CONDITIONS, load_conditions
from ceir.clones.recorder import Recorder
from ceir.config import Settings
from ceir.store import Store
from ceir.store.clonetables import operator_code
from ceir.store.identity import tokenizer_for
from ceir.store.vault import site_vault

if TYPE_CHECKING:
    from ceir.server.faces import Face
    from ceir.sightings import BatchObserver, Observer

__all__ = ["CloneSite", "RecorderFace", "clone_site"]


class RecorderFace:
    """The recorder's thread as a face of ``ceir serve``: started and drained with it."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def start(self) -> None:
        self.recorder.start()

    async def stop(self, grace: float | None) -> None:
        await asyncio.to_thread(self.recorder.stop)

    def describe(self) -> str:
        where = "central" if self.recorder.conditions is not None else "replica"
        return f"clone detection ({where}: sightings every {self.recorder.flush_seconds:g} s)"


@dataclass
class CloneSite:
    """The observer, the pair check and the background faces of one process."""

    recorder: Recorder | None = None
    paired: PairMatcher | None = None
    faces: list[Face] = field(default_factory=list)

    @property
    def observe(self) -> Observer | None:
        return None if self.recorder is None else self.recorder.observe

    @property
    def observe_batch(self) -> BatchObserver | None:
        return None if self.recorder is None else self.recorder.observe_requests


def clone_site(
    settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
) -> CloneSite:
    """The clone detection *settings* ask for on *store* (nothing with ``--no-observe``);
    *clock* stamps the sightings (a simulation's days)."""
    tokenizer = tokenizer_for(store)
    namespace = operator_code(settings.operator or "") if settings.replica else 0
    paired = PairMatcher(store, tokenizer, namespace)
    if not settings.observe:
        return CloneSite(paired=paired)
    conditions = None
    if not settings.replica:
        conditions = (
            DEFAULT_CONDITIONS
            if settings.clone_conditions is None
            else load_conditions(settings.clone_conditions)
        )
    site = CloneSite(paired=paired)
    upstream = None
    if settings.replica and settings.observations_key is not None:
        from ceir.clones.upstream import Outbox, Publisher

        upstream = Outbox.from_settings(settings)
        site.faces.append(Publisher.from_settings(settings, store))
    recorder = Recorder(
        store,
        tokenizer,
        conditions=conditions,
        namespace=namespace,
        vault=site_vault(store) if settings.replica else None,
        upstream=upstream,
        clock=clock,
    )
    site.recorder = recorder
    site.faces.insert(0, RecorderFace(recorder))
    if not settings.replica and settings.observation_keys is not None:
        from ceir.clones.upstream import Ingestor

        site.faces.append(Ingestor.from_settings(settings, recorder))
    return site
