"""Sightings upstream: an operator's replica -> the central register, over JetStream.

The other direction of the change feed's carrier: stream ``CEIR_OBSERVATIONS``, subject
``ceir.observations.<MCC-MNC>``. A message holds, per device and day, the number of
distinct SIMs this operator saw with the device and each one's token under the
**operator's own** identity-token key, with its first and last minute — never an IMSI,
and no token the central (or another operator) could link to a person. It is signed with
the operator's Ed25519 key (``--observations-key``); the central verifies it with that
operator's public key (``--observation-keys DIR`` holds ``<MCC-MNC>.pem``) and refuses a
message whose signature, operator or subject disagree, so a rogue publisher cannot fake
clones.

Nothing is lost when a replica stops: the recorder seals each message in the same write
transaction as the sightings it carries, into the replica's bounded ``outbox`` table
(:class:`Outbox`); the :class:`Publisher` sends the waiting ones in order and deletes each
once JetStream acknowledged it, so after a SIGTERM, a SIGKILL or a broker outage the rest
goes out when the replica runs again. A message numbers itself (the outbox's epoch and
sequence, signed): the central records each number once (:class:`Ingestor`, the last one
per operator kept in its store with what it merged), and ``Nats-Msg-Id`` (the SHA-256 of
the message) lets the broker drop a re-send within its duplicate window too.

Wire: ``CEIRO2 | operator u32 | epoch u64 | seq u64 | sent_ms u64 | records | signature
(64)``; a record is ``device key (8) | day u32 | count u16 | n u16 | n x (token 16 | first
u32 | last u32)``. Sequence 0: not numbered (never skipped).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ceir.clones.detector import Seen
from ceir.clones.recorder import DeviceDay, Recorder
from ceir.config import Settings
from ceir.errors import ConfigError, RefusedMessageError
from ceir.replication.broker import Broker, BrokerTask, ensure_stream
from ceir.replication.keys import load_signing_key, load_verify_key
from ceir.store import Store
from ceir.store.clonetables import Sighting, operator_code, operator_text
from ceir.store.tables import Tables

__all__ = [
    "OUTBOX_MAX",
    "STREAM",
    "SUBJECT",
    "Ingestor",
    "Outbox",
    "Publisher",
    "open_sightings",
    "seal_sightings",
]

log = logging.getLogger("ceir.clones")

STREAM = "CEIR_OBSERVATIONS"
SUBJECT = "ceir.observations"
_MAGIC = b"CEIRO2"
_HEAD = struct.Struct(">IQQQ")
_RECORD = struct.Struct(">8sIHH")
_TOKEN = struct.Struct(">16sII")
_SIG = 64
_MAX_RECORDS = 4000  # ~ 4000 x (16 + 24) bytes: well under NATS's 1 MiB max_payload
OUTBOX_MAX = 50_000
"""Messages a replica's outbox holds at most (some 3 hours of 0.2 s flushes while the
broker is away); past it new ones are dropped and counted."""
_SEND_BATCH = 64
_POLL = 0.1
_MARK = b"upstream:"
_U64 = struct.Struct(">Q")


def subject(operator: str) -> str:
    return f"{SUBJECT}.{operator}"


def seal_sightings(
    key: Ed25519PrivateKey,
    operator: int,
    days: Sequence[DeviceDay],
    sent_ms: int,
    *,
    epoch: int = 0,
    seq: int = 0,
) -> bytes:
    parts = [_MAGIC, _HEAD.pack(operator, epoch, seq, sent_ms)]
    for d in days:
        parts.append(_RECORD.pack(d.key, d.day, min(d.count, 0xFFFF), len(d.sightings)))
        parts.extend(_TOKEN.pack(s.token, s.first_min, s.last_min) for s in d.sightings)
    signed = b"".join(parts)
    return signed + key.sign(signed)


@dataclass(frozen=True, slots=True)
class Upstream:
    """A verified upstream message."""

    operator: int
    epoch: int
    seq: int
    sent_ms: int
    days: tuple[DeviceDay, ...]


def open_sightings(key: Ed25519PublicKey, data: bytes) -> Upstream:
    """The sightings in *data*; RefusedMessageError unless well formed and signed by *key*."""
    if len(data) < len(_MAGIC) + _HEAD.size + _SIG or not data.startswith(_MAGIC):
        raise RefusedMessageError("not a ceir observations message (junk bytes)")
    signed, signature = data[:-_SIG], data[-_SIG:]
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        raise RefusedMessageError("signature does not verify (forged or damaged)") from None
    at = len(_MAGIC)
    operator, epoch, seq, sent_ms = _HEAD.unpack_from(signed, at)
    at += _HEAD.size
    days = []
    try:
        while at < len(signed):
            device, day, count, n = _RECORD.unpack_from(signed, at)
            at += _RECORD.size
            sightings = []
            for _ in range(n):
                token, first, last = _TOKEN.unpack_from(signed, at)
                at += _TOKEN.size
                sightings.append(Sighting(token, operator, operator, first, last))
            days.append(DeviceDay(device, day, count, tuple(sightings)))
    except struct.error:
        raise RefusedMessageError("observations message is truncated") from None
    return Upstream(operator, epoch, seq, sent_ms, tuple(days))


def _broker(settings: Settings, url: str | None) -> Broker:
    if url is None:
        raise ConfigError("upstream sightings need a broker (--nats on a replica, --publish)")
    return Broker(url, settings.nats_user, settings.nats_password, settings.nats_creds)


class Outbox:
    """The recorder's upstream at a replica: what it recorded, sealed and stored in its
    write transaction (``outbox``), for the :class:`Publisher` to send."""

    def __init__(self, key: Ed25519PrivateKey, operator: str, limit: int = OUTBOX_MAX) -> None:
        self.key = key
        self.operator = operator
        self.code = operator_code(operator)
        self.limit = limit
        self.lost = 0
        """Messages dropped because the outbox was full (the broker away for long)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Outbox:
        if not settings.operator or not operator_code(settings.operator):
            raise ConfigError("--observations-key needs the replica's --operator (MCC-MNC)")
        assert settings.observations_key is not None
        return cls(load_signing_key(settings.observations_key), settings.operator)

    def __call__(self, tables: Tables, days: list[DeviceDay]) -> None:
        """Called inside the recorder's write transaction with what it recorded."""
        now = int(time.time() * 1000)
        for i in range(0, len(days), _MAX_RECORDS):
            if tables.outbox.waiting() >= self.limit:
                if not self.lost:
                    log.warning(
                        "upstream: the outbox holds %d messages (the broker has been away "
                        "long); dropping new sightings until it drains",
                        self.limit,
                    )
                self.lost += 1
                continue
            epoch, seq = tables.outbox.reserve()
            part = days[i : i + _MAX_RECORDS]
            sealed = seal_sightings(self.key, self.code, part, now, epoch=epoch, seq=seq)
            tables.outbox.put(seq, sealed)


class Publisher(BrokerTask):
    """A replica's upstream: the outbox's messages published in order, each deleted once
    JetStream acknowledged it."""

    task_name = "ceir-observations-publisher"

    def __init__(self, store: Store, broker: Broker, operator: str) -> None:
        super().__init__()
        self.store = store
        self.broker = broker
        self.operator = operator
        self.sent = 0

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> Publisher:
        assert settings.operator is not None
        return cls(store, _broker(settings, settings.nats), settings.operator)

    def describe(self) -> str:
        return f"sightings upstream to {self.broker.url} ({subject(self.operator)})"

    def waiting(self) -> int:
        with self.store.snapshot() as tables:
            return tables.outbox.waiting()

    def _oldest(self) -> list[tuple[int, bytes]]:
        with self.store.snapshot() as tables:
            return tables.outbox.oldest(_SEND_BATCH)

    def _delete(self, seqs: list[int]) -> None:
        self.store.write(lambda tables: tables.outbox.delete(seqs))

    async def _run(self) -> None:
        while self._nc is None:
            try:
                self._nc = await self.broker.connect("ceir-observations")
            except Exception as exc:  # noqa: BLE001 - broker away: keep serving
                log.warning("upstream: cannot reach the broker (%s); retrying", exc)
                await asyncio.sleep(1.0)
        js = self._nc.jetstream()
        while True:
            try:
                await ensure_stream(js, STREAM, f"{SUBJECT}.>")
                break
            except Exception as exc:  # noqa: BLE001 - broker away
                log.debug("upstream: no stream yet (%s)", exc)
                await asyncio.sleep(0.5)
        while True:
            batch = await asyncio.to_thread(self._oldest)
            if not batch:
                await asyncio.sleep(_POLL)
                continue
            done: list[int] = []
            try:
                for seq, payload in batch:
                    msg_id = hashlib.sha256(payload).hexdigest()[:32]
                    await js.publish(
                        subject(self.operator), payload, headers={"Nats-Msg-Id": msg_id}
                    )
                    done.append(seq)
                    self.sent += 1
            except Exception as exc:  # noqa: BLE001 - broker away: the rest waits, kept
                log.debug("upstream: publish failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
            finally:
                if done:
                    await asyncio.to_thread(self._delete, done)


def _seen(up: Upstream) -> list[Seen]:
    return [
        Seen(d.key, s.token, up.operator, up.operator, minute)
        for d in up.days
        for s in d.sightings
        for minute in {s.first_min, s.last_min}
    ]


def _mark(tables: Tables, operator: int) -> tuple[int, int]:
    """(epoch, sequence) of the last message taken from *operator*."""
    value = tables.config.get(_MARK + operator.to_bytes(4, "big"))
    if value is None:
        return 0, 0
    return _U64.unpack_from(value)[0], _U64.unpack_from(value, 8)[0]


def load_operator_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    """``<MCC-MNC>.pem`` public keys in *directory*, by operator."""
    try:
        paths = sorted(directory.glob("*.pem"))
    except OSError as exc:
        raise ConfigError(f"cannot read the operator keys in {directory}: {exc.strerror}") from exc
    keys = {}
    for path in paths:
        if not operator_code(path.stem):
            raise ConfigError(f"{path}: name an operator's key <MCC-MNC>.pem (e.g. 510-10.pem)")
        keys[path.stem] = load_verify_key(path)
    if not keys:
        raise ConfigError(f"no operator keys (<MCC-MNC>.pem) in {directory}")
    return keys


class Ingestor(BrokerTask):
    """The central's side: verified upstream sightings into the recorder, which evaluates
    the conditions on them. A durable consumer: nothing is lost across restarts."""

    task_name = "ceir-observations-ingest"
    durable = "ceir-central-observations"

    def __init__(
        self, broker: Broker, keys: dict[str, Ed25519PublicKey], recorder: Recorder
    ) -> None:
        super().__init__()
        self.broker = broker
        self.keys = keys
        self.recorder = recorder
        self.ingested = 0
        self.refused = 0
        self.skipped = 0
        """Messages whose number the central had taken already (re-sent)."""

    @classmethod
    def from_settings(cls, settings: Settings, recorder: Recorder) -> Ingestor:
        assert settings.observation_keys is not None
        keys = load_operator_keys(settings.observation_keys)
        return cls(_broker(settings, settings.publish), keys, recorder)

    def describe(self) -> str:
        return f"upstream sightings from {len(self.keys)} operators via {self.broker.url}"

    def _verify(self, msg: Any) -> Upstream:
        operator = str(msg.subject).removeprefix(SUBJECT + ".")
        key = self.keys.get(operator)
        if key is None:
            raise RefusedMessageError(f"no key for operator {operator!r}")
        up = open_sightings(key, bytes(msg.data or b""))
        if operator_text(up.operator) != operator:
            raise RefusedMessageError("the message names another operator than its subject")
        return up

    def _open(self, msg: Any) -> list[Seen]:
        return _seen(self._verify(msg))

    def _ingest(self, ups: list[Upstream]) -> int:
        """Merge the messages not taken before, and note the last number per operator,
        in one write transaction; returns how many sightings were merged."""
        seen: list[Seen] = []
        skipped = [0]

        def mark(tables: Tables) -> None:
            seen.clear()  # (a transaction run again starts afresh)
            skipped[0] = 0
            marks: dict[int, tuple[int, int]] = {}
            for up in ups:
                if up.seq:
                    last = marks.get(up.operator) or _mark(tables, up.operator)
                    if last[0] == up.epoch and up.seq <= last[1]:
                        skipped[0] += 1
                        continue
                    marks[up.operator] = (up.epoch, up.seq)
                seen.extend(_seen(up))
            for operator, (epoch, seq) in marks.items():
                name = _MARK + operator.to_bytes(4, "big")
                tables.config.put(name, _U64.pack(epoch) + _U64.pack(seq))

        self.recorder.ingest(seen, before=mark)
        if skipped[0]:
            self.skipped += skipped[0]
            log.info(
                "ingest: %d re-sent observations message(s) skipped (taken before)", skipped[0]
            )
        return len(seen)

    async def _run(self) -> None:
        from nats.js import api

        while self._nc is None:
            try:
                self._nc = await self.broker.connect("ceir-observations-ingest")
            except Exception as exc:  # noqa: BLE001 - broker away: keep serving
                log.warning("ingest: cannot reach the broker (%s); retrying", exc)
                await asyncio.sleep(1.0)
        js = self._nc.jetstream()
        sub = None
        while True:
            if sub is None:
                try:
                    await ensure_stream(js, STREAM, f"{SUBJECT}.>")
                    config = api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT)
                    sub = await js.pull_subscribe(
                        f"{SUBJECT}.>", durable=self.durable, stream=STREAM, config=config
                    )
                except Exception as exc:  # noqa: BLE001 - broker away
                    log.debug("ingest: cannot subscribe (%s)", exc)
                    await asyncio.sleep(0.5)
                    continue
            try:
                msgs = await sub.fetch(256, timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:  # noqa: BLE001 - consumer lost (broker restarted)
                log.debug("ingest: fetch failed (%s)", exc)
                sub = None
                await asyncio.sleep(0.2)
                continue
            ups: list[Upstream] = []
            for msg in msgs:
                try:
                    ups.append(self._verify(msg))
                except RefusedMessageError as exc:
                    self.refused += 1
                    log.warning("ingest: refused an observations message: %s", exc)
            if ups:
                self.ingested += await asyncio.to_thread(self._ingest, ups)
            for msg in msgs:
                await msg.ack()
