"""Recording sightings off the hot path: a bounded in-process queue, flushed in batches.

A face's call to :meth:`Recorder.observe` appends one tuple to a list (no lock, no I/O,
no HMAC) and returns. A background thread takes the list every ``flush_seconds``,
tokenises the IMSIs, and writes the whole batch in one write transaction: sightings merged,
conditions evaluated (at the central register), transitions written
(:func:`ceir.clones.detector.merge`), grace periods swept. At an operator's replica the
thread also seals its own SIMs' IMSIs into the vault (:mod:`ceir.store.vault`) and, in
the same transaction, what it recorded into the upstream outbox
(:class:`ceir.clones.upstream.Outbox`); conditions run
at the central only, on what every operator sends.

The queue is bounded (``max_queue``): under a flood past what the store takes, sightings
are dropped and counted (:attr:`Recorder.dropped`), never the answer delayed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ceir.clones.conditions import Condition
from ceir.clones.detector import Seen, merge, sweep
from ceir.errors import CeirError
from ceir.sightings import sightings_of
from ceir.store import Store
from ceir.store.clonetables import Sighting, operator_code
from ceir.store.identity import IdKind, Tokenizer
from ceir.store.tables import Tables
from ceir.store.vault import SiteVault

__all__ = ["DEFAULT_FLUSH_SECONDS", "DEFAULT_MAX_QUEUE", "DeviceDay", "Recorder"]

log = logging.getLogger(__name__)

DEFAULT_FLUSH_SECONDS = 0.2
DEFAULT_MAX_QUEUE = 200_000
REFRESH_MINUTES = 10
"""A SIM seen again with the same device within this many minutes of the sighting last
written is not written again (a phone attaches many times a day; the conditions need
minutes only to the simultaneity window, 60)."""
_RECENT_MAX = 1_000_000
_SWEEP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class DeviceDay:
    """What a replica sends upstream for one device and day: its own tokens only."""

    key: bytes
    day: int
    count: int
    """Distinct IMSIs this operator saw with the device that day."""
    sightings: tuple[Sighting, ...]


def operator_of(operator_id: str, imsi: str) -> int:
    """The operator code of a sighting: the caller's MCC-MNC, else the IMSI's first five
    digits (a 2-digit MNC, as Indonesia's operators have)."""
    code = operator_code(operator_id)
    if code or len(imsi) < 5 or not imsi[:5].isdigit():
        return code
    return operator_code(f"{imsi[:3]}-{imsi[3:5]}")


class Recorder:
    """The observer of a site's faces (:data:`ceir.sightings.Observer`)."""

    def __init__(
        self,
        store: Store,
        tokenizer: Tokenizer,
        *,
        conditions: Sequence[Condition] | None,
        namespace: int = 0,
        vault: SiteVault | None = None,
        upstream: Callable[[Tables, list[DeviceDay]], None] | None = None,
        clock: Callable[[], float] = time.time,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.store = store
        self.tokenizer = tokenizer
        self.conditions = conditions
        self.namespace = namespace
        self.vault = vault
        self.upstream = upstream
        self.clock = clock
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.dropped = 0
        self.recorded = 0
        self.transitions = 0
        self._queue: list[tuple[bytes, str, str, float]] = []
        self._batches: list[tuple[Sequence[Any], str, float]] = []
        self._sealed: set[bytes] = set()
        self._recent: dict[tuple[bytes, str], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._lock = threading.Lock()  # one flush at a time (the thread, or flush())

    # -- the hot path ----------------------------------------------------------------

    def observe(self, device_key: bytes, imsi: str, operator_id: str) -> None:
        """Queue one sighting; never blocks (past ``max_queue`` it is dropped, counted)."""
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        queue.append((device_key, imsi, operator_id, self.clock()))

    def observe_requests(self, requests: Sequence[Any], operator_id: str) -> None:
        """Queue a whole batch's CheckIMEI requests (those with an ``imsi`` count): one
        append per batch; their IMEIs are parsed by the background thread."""
        if len(self._batches) >= self.max_queue // 1000 + 1:
            self.dropped += len(requests)
            return
        self._batches.append((requests, operator_id, self.clock()))

    # -- the background side -----------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ceir-clones", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Flush what is queued and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with contextlib.suppress(CeirError):
            self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except CeirError as exc:  # the store is full or gone: keep answering
                log.warning("clone detection: cannot record sightings: %s", exc)
            except Exception:  # pragma: no cover - a bug must not stop the thread
                log.exception("clone detection: recording failed")

    def _fresh(
        self, batch: list[tuple[bytes, str, str, float]]
    ) -> list[tuple[bytes, str, str, float]]:
        """The sightings not written within the last :data:`REFRESH_MINUTES`."""
        recent = self._recent
        if len(recent) > _RECENT_MAX:
            recent.clear()
        out = []
        for item in batch:
            minute = int(item[3] // 60)
            pair = (item[0], item[1])
            last = recent.get(pair)
            if last is not None and 0 <= minute - last < REFRESH_MINUTES:
                continue
            recent[pair] = minute
            out.append(item)
        return out

    def _seen(self, batch: list[tuple[bytes, str, str, float]]) -> list[Seen]:
        token = self.tokenizer.token
        ns = self.namespace  # at a replica, also the operator that saw it
        operators: dict[tuple[str, str], int] = {}
        out = []
        for key, imsi, operator_id, at in batch:
            op = ns
            if not op:
                where = (operator_id, imsi[:5])
                op = operators.get(where, -1)
                if op < 0:
                    op = operators[where] = operator_of(operator_id, imsi)
            out.append(Seen(key, token(IdKind.IMSI, imsi), ns, op, int(at // 60)))
        return out

    def _seal(self, tables: Tables, batch: list[tuple[bytes, str, str, float]]) -> None:
        if self.vault is None:
            return
        for _key, imsi, _op, _at in batch:
            t = self.tokenizer.token(IdKind.IMSI, imsi)
            if t in self._sealed:
                continue
            if tables.vault.get(t) is None:
                tables.vault.put(t, self.vault.seal(t, imsi))
            if len(self._sealed) < 1_000_000:
                self._sealed.add(t)

    def flush(self) -> int:
        """Write what is queued now; returns how many sightings it wrote."""
        with self._lock:
            batch, self._queue = self._queue, []
            batches, self._batches = self._batches, []
            for requests, operator_id, at in batches:
                batch += [(k, sim, operator_id, at) for k, sim in sightings_of(requests)]
            batch = self._fresh(batch)
            now = int(self.clock())
            due = self.conditions is not None and now - self._last_sweep >= _SWEEP_SECONDS
            if not batch and not due:
                return 0
            seen = self._seen(batch)

            def write(tables: Tables) -> int:
                self._seal(tables, batch)
                moved = merge(tables, seen, self.conditions, now) if seen else 0
                if due:
                    moved += sweep(tables, now)
                if seen and self.upstream is not None:  # in this transaction: never lost
                    self.upstream(tables, self._days(tables, seen))
                return moved

            moved = self.store.write(write)
            if due:
                self._last_sweep = now
            self.recorded += len(seen)
            self.transitions += moved
        return len(seen)

    def ingest(
        self,
        seen: Sequence[Seen],
        now: int | None = None,
        *,
        before: Callable[[Tables], None] | None = None,
    ) -> int:
        """Record sightings another site sent (the central's upstream ingest); returns how
        many transitions they caused. *before* runs first in the same write transaction
        (it may still add to *seen*: the ingest's duplicate check)."""
        at = int(self.clock()) if now is None else now

        def write(tables: Tables) -> int:
            if before is not None:
                before(tables)
            return merge(tables, seen, self.conditions, at) if seen else 0

        with self._lock:
            moved = self.store.write(write)
            self.recorded += len(seen)
            self.transitions += moved
        return moved

    def sweep_now(self, now: int | None = None) -> int:
        """Run the grace-period sweep at once (the scenario's simulated days)."""
        at = int(self.clock()) if now is None else now
        with self._lock:
            moved = self.store.write(lambda tables: sweep(tables, at))
            self._last_sweep = at
            self.transitions += moved
        return moved

    @staticmethod
    def _days(tables: Tables, seen: Sequence[Seen]) -> list[DeviceDay]:
        """Per device touched, today's sightings (this site's own tokens)."""
        latest: dict[bytes, int] = {}
        for s in seen:
            latest[s.key] = max(latest.get(s.key, 0), s.minute)
        out = []
        for key, minute in sorted(latest.items()):
            day = minute // 1440
            today = tuple(s for s in tables.observations.get(key)[1] if s.last_min // 1440 == day)
            out.append(DeviceDay(key, day, len(today), today))
        return out
