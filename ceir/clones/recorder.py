"""Recording sightings: tokenised, merged, conditions evaluated, written in batches.

``ceir serve`` runs one :class:`Recorder` per site in its **recorder process**
(:mod:`ceir.clones.process`): the workers hand it frames of sightings
(:class:`ceir.sightings.Handoff`, :meth:`Recorder.receive`), so none of the work below
shares a worker's interpreter. An in-process server (tests, the clone scenario, an
embedding) feeds it directly: :meth:`Recorder.observe` appends one tuple (no lock, no I/O,
no HMAC), :meth:`Recorder.observe_batch` one serialized batch message.

A background thread takes what is queued whenever something arrives (at most every
``flush_seconds``), drops what it wrote within :data:`ceir.sightings.REFRESH_MINUTES`,
tokenises the IMSIs, and writes the whole batch in one write transaction: sightings merged,
conditions evaluated (at the central register), transitions written
(:func:`ceir.clones.detector.merge`), grace periods swept. At an operator's replica the
thread also seals its own SIMs' IMSIs into the vault (:mod:`ceir.store.vault`) and, in
the same transaction, what it recorded into the upstream outbox
(:class:`ceir.clones.upstream.Outbox`); conditions run
at the central only, on what every operator sends.

The queue is bounded (``max_queue``): under a flood past what the store takes, sightings
are dropped and counted (:attr:`Recorder.dropped`, ``ceir_sightings_dropped_total``).
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ceir import metrics
from ceir.clones.conditions import Condition
from ceir.clones.detector import Seen, merge, sweep
from ceir.errors import CeirError
from ceir.sightings import REFRESH_MINUTES, Observation, pack, unpack
from ceir.store import Store
from ceir.store.clonetables import Sighting, operator_code
from ceir.store.identity import IdKind, Tokenizer
from ceir.store.tables import Tables
from ceir.store.vault import SiteVault

__all__ = ["CHUNK", "DEFAULT_FLUSH_SECONDS", "DEFAULT_MAX_QUEUE", "DeviceDay", "Recorder"]

log = logging.getLogger(__name__)

DEFAULT_FLUSH_SECONDS = 0.2
DEFAULT_MAX_QUEUE = 200_000
CHUNK = 2000
"""Sightings per write transaction (some 50 ms of work: the lock is never held long)."""
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
        self.malformed = 0
        self._queue: list[Observation] = []
        self._frames: list[bytes] = []
        self._pending = 0
        self._wake = threading.Event()
        self._sealed: set[bytes] = set()
        self._recent: dict[tuple[bytes, str], int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._lock = threading.Lock()  # one flush at a time (the thread, or flush())

    # -- the hot path ----------------------------------------------------------------

    def observe(self, device_key: bytes, imsi: str, operator_id: str) -> None:
        """Queue one sighting; never blocks (past ``max_queue`` it is dropped, counted)."""
        if self._pending >= self.max_queue:
            self._drop(1)
            return
        self._pending += 1
        self._queue.append((device_key, imsi, operator_id, int(self.clock()) // 60))

    def observe_batch(self, data: bytes, operator_id: str) -> None:
        """Queue a serialized CheckIMEIBatchRequest (those of its requests with an ``imsi``
        count): one append per batch; its IMEIs are parsed by the background thread."""
        self.receive(pack((), ((data, operator_id, int(self.clock()) // 60),)))

    def receive(self, frame: bytes) -> None:
        """Queue a frame a worker handed over (:func:`ceir.sightings.pack`) and wake the
        thread; past ``max_queue`` (requests weighed by size) it is dropped, counted."""
        weight = len(frame) // 40 + 1
        if self._pending + weight > self.max_queue:
            self._drop(weight)
            return
        self._pending += weight
        self._frames.append(frame)
        self._wake.set()

    def _drop(self, count: int) -> None:
        self.dropped += count
        metrics.sightings_dropped(metrics.DropStage.RECORDER, count)

    # -- the background side -----------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ceir-clones", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Flush what is queued and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with contextlib.suppress(CeirError):
            self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return  # stop() flushes what is left
            try:
                self.flush()
            except CeirError as exc:  # the store is full or gone: keep answering
                log.warning("clone detection: cannot record sightings: %s", exc)
            except Exception:  # pragma: no cover - a bug must not stop the thread
                log.exception("clone detection: recording failed")

    def _fresh(self, batch: list[Observation]) -> list[Observation]:
        """The sightings not written within the last :data:`REFRESH_MINUTES`."""
        recent = self._recent
        if len(recent) > _RECENT_MAX:
            recent.clear()
        out = []
        for item in batch:
            minute = item[3]
            pair = (item[0], item[1])
            last = recent.get(pair)
            if last is not None and 0 <= minute - last < REFRESH_MINUTES:
                continue
            recent[pair] = minute
            out.append(item)
        return out

    def _seen(self, batch: list[Observation]) -> list[Seen]:
        token = self.tokenizer.token
        ns = self.namespace  # at a replica, also the operator that saw it
        operators: dict[tuple[str, str], int] = {}
        out = []
        for key, imsi, operator_id, minute in batch:
            op = ns
            if not op:
                where = (operator_id, imsi[:5])
                op = operators.get(where, -1)
                if op < 0:
                    op = operators[where] = operator_of(operator_id, imsi)
            out.append(Seen(key, token(IdKind.IMSI, imsi), ns, op, minute))
        return out

    def _seal(self, tables: Tables, batch: list[Observation]) -> None:
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
            frames, self._frames = self._frames, []
            self._pending = 0
            for frame in frames:
                try:
                    batch += list(unpack(frame))
                except (ValueError, UnicodeDecodeError, DecodeError, struct.error):
                    self.malformed += 1  # a worker's bug or a stray peer: not recorded
            batch = self._fresh(batch)
            now = int(self.clock())
            due = self.conditions is not None and now - self._last_sweep >= _SWEEP_SECONDS
            if not batch and not due:
                return 0
            seen = self._seen(batch)
            # Write transactions of at most CHUNK sightings: the store's one writer lock
            # is never held long (a worker's own writes, a replica's follower wait on it).
            for lo in range(0, max(len(seen), 1), CHUNK):
                part, sims = seen[lo : lo + CHUNK], batch[lo : lo + CHUNK]
                sweeping = due and lo == 0

                def write(
                    tables: Tables,
                    part: list[Seen] = part,
                    sims: list[Observation] = sims,
                    sweeping: bool = sweeping,
                ) -> int:
                    self._seal(tables, sims)
                    moved = merge(tables, part, self.conditions, now) if part else 0
                    if sweeping:
                        moved += sweep(tables, now)
                    if part and self.upstream is not None:  # in this transaction: never lost
                        self.upstream(tables, self._days(tables, part))
                    return moved

                moved = self.store.write(write)
                self.recorded += len(part)
                self.transitions += moved
            if due:
                self._last_sweep = now
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
