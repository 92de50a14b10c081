"""The observation seam: which SIM a device attached with, as a core network told us.

CheckIMEI's ``imsi``, N5g-eir's ``supi`` (``imsi-…``) and S13's ``User-Name`` are the IMSI
of an attach. A face that learns one calls an :data:`Observer` with

- the device's 8-byte store key (:func:`ceir.imei.body_key` of its 14-digit body),
- the IMSI as the network sent it (in memory only: the recorder tokenises it before
  anything is stored, and nothing logs it),
- the operator id (MCC-MNC) of the principal that asked; empty without security.

A CheckIMEIBatch or stream message with IMSIs goes to a :data:`BatchObserver` whole, as
the serialized bytes the server was handed (nothing parsed per request on the hot path).

``ceir serve`` records in a **separate recorder process** per site
(:mod:`ceir.clones.process`, started by the supervisor with the workers). A worker's share
is a :class:`Handoff`: ``observe`` appends a compact tuple after a cheap per-device check
(the same SIM on the same device within :data:`REFRESH_MINUTES` is not handed over again),
``observe_batch`` appends the message's bytes; every :data:`HANDOFF_SECONDS` the
:class:`RecorderLink` packs what is pending into one frame (:func:`pack`) and writes it to
the recorder's unix socket without waiting. Both are bounded: past the bound, or while the
recorder is away, sightings are dropped and counted (``ceir_sightings_dropped_total``),
never the answer delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ceir import metrics
from ceir.errors import InvalidImeiError
from ceir.imei import check_digit, parse

__all__ = [
    "HANDOFF_SECONDS",
    "REFRESH_MINUTES",
    "BatchObserver",
    "Handoff",
    "Observer",
    "RecorderLink",
    "ignore",
    "pack",
    "read_frames",
    "sightings_of",
    "unpack",
]

log = logging.getLogger("ceir.sightings")

Observer = Callable[[bytes, str, str], None]
"""``observe(device_key, imsi, operator_id)``; must be cheap (it is on the hot path)."""

BatchObserver = Callable[[bytes, str], None]
"""``observe_batch(check_imei_batch_request_bytes, operator_id)``: a whole batch at once,
parsed later (:func:`sightings_of`) off the hot path."""

REFRESH_MINUTES = 10
"""A SIM seen again with the same device within this many minutes of the sighting last
handed over (or written) is not handed over again (a phone attaches many times a day; the
conditions need minutes only to the simultaneity window, 60)."""
HANDOFF_SECONDS = 0.2
"""How often a worker hands its pending sightings to the recorder process."""
MAX_PENDING = 200_000
"""Sightings (single ones, plus requests inside batch messages) a worker holds between
two handoffs; past it they are dropped and counted."""
MAX_UNSENT_BYTES = 32 << 20
"""Bytes a worker lets queue on the recorder's socket before it drops frames."""
_RECENT_MAX = 1_000_000

# A frame is groups: kind u8 | operator length u8 | minute u32 | payload length u32 |
# operator (ASCII) | payload. SIGHTINGS: count u32 | keys (8 each) | IMSIs joined by "\n".
# REQUESTS: one serialized CheckIMEIBatchRequest. On the socket: length u32 | frame.
_GROUP = struct.Struct("<BBII")
_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<I")
_SIGHTINGS = 1
_REQUESTS = 2
Observation = tuple[bytes, str, str, int]
"""(device key, IMSI, operator id, Unix minute) as the recorder gets it."""


def ignore(device_key: bytes, imsi: str, operator_id: str) -> None:
    """The observer when recording is off (``--no-observe``): sightings are not kept."""


def sightings_of(requests: Sequence[Any]) -> list[tuple[bytes, str]]:
    """(device key, IMSI) of each CheckIMEI request with an ``imsi`` and a valid IMEI."""
    out = []
    for request in requests:
        sim = request.imsi
        if not sim:
            continue
        text = request.imei
        n = len(text)
        if 14 <= n <= 16 and text.isascii() and text.isdigit():
            # The plain forms, as the lookup's fast path takes them (15: check digit).
            if n != 15 or ord(text[14]) - 48 == check_digit(text[:14]):
                out.append((int(text[:14]).to_bytes(8, "big"), sim))
            continue
        try:
            out.append((parse(text).key, sim))
        except InvalidImeiError:
            continue
    return out


def _group(kind: int, operator: str, minute: int, payload: bytes) -> bytes:
    op = operator.encode("ascii", "replace")[:255]
    return _GROUP.pack(kind, len(op), minute, len(payload)) + op + payload


def pack(sightings: Sequence[Observation], batches: Sequence[tuple[bytes, str, int]] = ()) -> bytes:
    """One frame of *sightings* and of serialized batch messages *batches* (bytes,
    operator id, minute): grouped per (operator, minute), keys and IMSIs joined in C."""
    groups: dict[tuple[str, int], tuple[list[bytes], list[str]]] = {}
    for key, imsi, operator, minute in sightings:
        where = groups.get((operator, minute))
        if where is None:
            where = groups[operator, minute] = ([], [])
        where[0].append(key)
        where[1].append(imsi)
    parts = [
        _group(
            _SIGHTINGS,
            operator,
            minute,
            _COUNT.pack(len(keys)) + b"".join(keys) + "\n".join(imsis).encode(),
        )
        for (operator, minute), (keys, imsis) in groups.items()
    ]
    parts += [_group(_REQUESTS, operator, minute, data) for data, operator, minute in batches]
    return b"".join(parts)


def unpack(frame: bytes) -> Iterator[Observation]:
    """The sightings in *frame* (:func:`pack`); ValueError when it is not one. Batch
    messages are parsed here, and their requests without an IMSI or a valid IMEI skipped."""
    from ceir.v1 import eir_pb2

    view = memoryview(frame)
    at = 0
    while at < len(frame):
        if at + _GROUP.size > len(frame):
            raise ValueError("a truncated group")
        kind, op_len, minute, size = _GROUP.unpack_from(frame, at)
        at += _GROUP.size
        operator = bytes(view[at : at + op_len]).decode("ascii")
        at += op_len
        payload = bytes(view[at : at + size])
        at += size
        if len(payload) != size:
            raise ValueError("a truncated group")
        if kind == _SIGHTINGS:
            if size < _COUNT.size:
                raise ValueError("a truncated group")
            (count,) = _COUNT.unpack_from(payload)
            end = _COUNT.size + 8 * count
            imsis = payload[end:].decode().split("\n") if count else []
            if len(imsis) != count or len(payload) < end:
                raise ValueError("a sightings group whose keys and IMSIs disagree")
            for i, imsi in enumerate(imsis):
                yield payload[_COUNT.size + 8 * i : _COUNT.size + 8 * i + 8], imsi, operator, minute
        elif kind == _REQUESTS:
            message = eir_pb2.CheckIMEIBatchRequest.FromString(payload)
            for key, imsi in sightings_of(message.requests):
                yield key, imsi, operator, minute
        else:
            raise ValueError(f"a group of unknown kind {kind}")


class Handoff:
    """A worker's pending sightings: the faces' :data:`Observer` and :data:`BatchObserver`.

    Only appends and a dict lookup here; :meth:`take` packs (on the loop, every
    :data:`HANDOFF_SECONDS`)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.clock = clock
        self.max_pending = max_pending
        self.dropped = 0
        self._sightings: list[Observation] = []
        self._batches: list[tuple[bytes, str, int]] = []
        self._pending = 0
        self._recent: dict[tuple[bytes, str], int] = {}

    def observe(self, device_key: bytes, imsi: str, operator_id: str) -> None:
        minute = int(self.clock()) // 60
        pair = (device_key, imsi)
        last = self._recent.get(pair)
        if last is not None and 0 <= minute - last < REFRESH_MINUTES:
            return
        if self._pending >= self.max_pending or "\n" in imsi:
            self.drop(1)
            return
        self._recent[pair] = minute
        self._pending += 1
        self._sightings.append((device_key, imsi, operator_id, minute))

    def observe_batch(self, data: bytes, operator_id: str) -> None:
        # A batch counts as its requests by size (~40 bytes each): no parsing here.
        weight = len(data) // 40 + 1
        if self._pending + weight > self.max_pending:
            self.drop(weight)
            return
        self._pending += weight
        self._batches.append((data, operator_id, int(self.clock()) // 60))

    def drop(self, count: int) -> None:
        self.dropped += count
        metrics.sightings_dropped(metrics.DropStage.HANDOFF, count)

    def take(self) -> tuple[bytes, int] | None:
        """What is pending as one frame and how many sightings it weighs; None: nothing."""
        if not self._pending:
            return None
        sightings, self._sightings = self._sightings, []
        batches, self._batches = self._batches, []
        weight, self._pending = self._pending, 0
        if len(self._recent) > _RECENT_MAX:
            self._recent.clear()
        return pack(sightings, batches), weight


class RecorderLink:
    """A worker's connection to the recorder process: a face of ``ceir serve`` that hands
    *handoff*'s frames over every *interval* seconds, reconnecting when the recorder is
    away (what is pending meanwhile is dropped and counted)."""

    def __init__(
        self,
        path: Path,
        handoff: Handoff,
        *,
        interval: float = HANDOFF_SECONDS,
        max_unsent: int = MAX_UNSENT_BYTES,
    ) -> None:
        self.path = path
        self.handoff = handoff
        self.interval = interval
        self.max_unsent = max_unsent
        self.sent = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    async def start(self) -> None:
        with contextlib.suppress(OSError):
            await self._connect()
        self._task = asyncio.create_task(self._run(), name="ceir-recorder-link")

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
        self._warned = False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self._connected():
                self._writer = None
                try:
                    await self._connect()
                except OSError as exc:
                    if not self._warned:
                        log.warning("clone detection: the recorder is away (%s)", exc.strerror)
                        self._warned = True
            self.hand_over()

    def _connected(self) -> bool:
        """Whether the recorder is there: it never writes, so end of file means it is gone
        (seen before a frame is written into a dead socket)."""
        writer, reader = self._writer, self._reader
        if writer is None or reader is None or writer.is_closing():
            return False
        if reader.at_eof():
            writer.close()
            return False
        return True

    def hand_over(self) -> None:
        """Write what is pending now (or drop it: no recorder, or too much unsent)."""
        taken = self.handoff.take()
        if taken is None:
            return
        frame, weight = taken
        writer = self._writer
        if (
            writer is None
            or not self._connected()
            or writer.transport.get_write_buffer_size() > self.max_unsent
        ):
            self.handoff.drop(weight)
            return
        writer.write(_LENGTH.pack(len(frame)) + frame)
        self.sent += weight

    async def stop(self, grace: float | None) -> None:
        """Hand over what is left, flush the socket (within a second or two), close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.hand_over()
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), timeout=2.0)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

    def describe(self) -> str:
        return f"clone detection in the recorder process (sightings every {self.interval:g} s)"


async def read_frames(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The frames a :class:`RecorderLink` writes, until it hangs up."""
    while True:
        try:
            head = await reader.readexactly(_LENGTH.size)
            (size,) = _LENGTH.unpack(head)
            yield await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return
