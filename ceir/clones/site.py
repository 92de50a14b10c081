"""What clone detection adds to one serving process: the faces' observer, the pair check,
and the background tasks.

Under ``ceir serve`` the recording happens in the site's recorder process
(:mod:`ceir.clones.process`): a worker's observer is a :class:`ceir.sightings.Handoff` and
its one background face the :class:`ceir.sightings.RecorderLink` to that process, which
runs the :class:`~ceir.clones.recorder.Recorder` and the upstream tasks. An in-process
server (``create_server`` without a recorder socket: tests, the clone scenario) runs them
itself, as the recorder process does:

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
from pathlib import Path
from typing import TYPE_CHECKING

from ceir.clones.actions import PairMatcher
from ceir.clones.conditions import DEFAULT_CONDITIONS, load_conditions
from ceir.clones.recorder import Recorder
from ceir.config import Settings
from ceir.sightings import Handoff, RecorderLink
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

    def flush(self) -> int:
        """Write what is queued now (:meth:`Recorder.flush`)."""
        return self.recorder.flush()

    def describe(self) -> str:
        where = "central" if self.recorder.conditions is not None else "replica"
        return f"clone detection ({where}: sightings every {self.recorder.flush_seconds:g} s)"


@dataclass
class CloneSite:
    """The observer, the pair check and the background faces of one process."""

    recorder: Recorder | None = None
    paired: PairMatcher | None = None
    faces: list[Face] = field(default_factory=list)
    handoff: Handoff | None = None
    """A worker's pending sightings for the recorder process (instead of *recorder*)."""

    @property
    def observe(self) -> Observer | None:
        if self.handoff is not None:
            return self.handoff.observe
        return None if self.recorder is None else self.recorder.observe

    @property
    def observe_batch(self) -> BatchObserver | None:
        if self.handoff is not None:
            return self.handoff.observe_batch
        return None if self.recorder is None else self.recorder.observe_batch


def clone_site(
    settings: Settings,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    recorder_socket: Path | None = None,
) -> CloneSite:
    """The clone detection *settings* ask for on *store* (nothing with ``--no-observe``);
    *clock* stamps the sightings (a simulation's days). With *recorder_socket* (the recorder
    process's socket), the sightings are handed over to it; else recorded here."""
    tokenizer = tokenizer_for(store)
    namespace = operator_code(settings.operator or "") if settings.replica else 0
    paired = PairMatcher(store, tokenizer, namespace)
    if not settings.observe:
        return CloneSite(paired=paired)
    if recorder_socket is not None:
        handoff = Handoff(clock=clock)
        link = RecorderLink(recorder_socket, handoff)
        return CloneSite(paired=paired, faces=[link], handoff=handoff)
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
