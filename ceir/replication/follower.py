"""The follower: bootstrap a replica's store from the central's snapshot, then apply the
``CEIR_CHANGES`` stream to it, in sequence, forever.

- An empty store bootstraps: the central's signed snapshot (gRPC ``Replication.Snapshot``)
  replaces the hot table in one write transaction, with the sequence it is at, so a
  replica killed mid-bootstrap starts again from nothing, and readers of a re-bootstrap
  see the old table until the new one is whole.
- Then it reads the stream from the stream sequence after the last one applied. Every
  message must verify under the central's public key; the signed log sequence inside
  decides: at or below the applied sequence -> refused as a replay; the next one ->
  applied; beyond it -> a gap (the stream was purged or lost messages): re-bootstrap,
  never skip. Junk, forgeries and replays are refused, logged and counted; service goes
  on. Applied entries and the applied sequence commit in one transaction.
- Heart-beats (signed too) tell the head sequence; the replica keeps them in its store
  (at most once a second) so ``ceir replica status`` and the Status RPC can say how stale
  it is. A follower that hears of a head it is not getting re-subscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ceir import metrics
from ceir.errors import CeirError, RefusedMessageError
from ceir.replication import HEARTBEAT_SUBJECT, STREAM, SUBJECT, wire
from ceir.replication.broker import Broker, BrokerTask
from ceir.security.certs import check_pair, read_pem
from ceir.store import Store, replica
from ceir.store.replica import Applied, ReplicaState

__all__ = ["Follower", "SourceTLS"]

log = logging.getLogger("ceir.replication")

_FETCH = 256
_STALL = 3.0  # seconds a known head may stay out of reach before re-subscribing
_NOTE_EVERY = 1.0
_SNAPSHOT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceTLS:
    """How a replica reaches its source over TLS: the central's CA, and optionally a
    client certificate and its key (PEM bytes) naming a ``replica`` principal."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None

    @classmethod
    def load(cls, ca: Path, cert: Path | None = None, key: Path | None = None) -> SourceTLS:
        """Read the files (ConfigError naming the one that does not fit)."""
        pem = cls(read_pem(ca, "central's CA certificate"))
        if cert is None or key is None:
            return pem
        pair = read_pem(cert, "replica's client certificate"), read_pem(key, "replica's client key")
        check_pair(*pair, cert, key)
        return cls(pem.ca, *pair)


class _Gap(Exception):  # noqa: N818 - control flow inside the follower, never escapes
    def __init__(self, expected: int, found: int) -> None:
        if found:
            super().__init__(f"expected change {expected}, the stream has {found} next")
        else:
            super().__init__(f"the stream no longer holds change {expected}")


class Follower(BrokerTask):
    """Keeps *store* a copy of the central register's hot table."""

    task_name = "ceir-follower"

    def __init__(
        self,
        store: Store,
        broker: Broker,
        key: Ed25519PublicKey,
        source: str,
        *,
        source_token: str | None = None,
        source_tls: SourceTLS | None = None,
        operator: str | None = None,
        on_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.broker = broker
        self.key = key
        self.source = source
        self.source_token = source_token
        self.source_tls = source_tls
        self.operator = operator
        self.on_ready = on_ready
        self.refused: Counter[str] = Counter()
        self.bootstraps = 0
        self.beat: wire.Heartbeat | None = None
        self.state: ReplicaState | None = None
        self._noted = 0.0
        self._refused_base = 0

    def describe(self) -> str:
        serves = f" for operator {self.operator}" if self.operator else ""
        return f"replica{serves} of {self.source}, following {self.broker.url} (stream {STREAM})"

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        # The bulk apply decodes with numpy: import it now, not inside the first import's
        # apply (half a second on this machine, added to that import's lag).
        await asyncio.to_thread(importlib.import_module, "numpy")
        self.state = replica.state(self.store)
        self._refused_base = 0 if self.state is None else self.state.refused
        if self.state is None:
            self.state = await self._bootstrap()
        if self.on_ready is not None:
            await self.on_ready()
        await self._connect()
        js = self._nc.jetstream()
        while True:
            try:
                await self._follow(js)
            except _Gap as gap:
                log.warning("replica: %s; re-bootstrapping from %s", gap, self.source)
                self.state = await self._bootstrap()

    async def _connect(self) -> None:
        while self._nc is None:
            try:
                self._nc = await self.broker.connect("ceir-replica")
            except Exception as exc:  # noqa: BLE001 - broker away: serve, keep trying
                log.warning(
                    "replica: cannot reach the broker %s (%s); retrying", self.broker.url, exc
                )
                await asyncio.sleep(1.0)
        await self._nc.subscribe(HEARTBEAT_SUBJECT, cb=self._on_beat)

    async def _on_beat(self, msg: Any) -> None:
        try:
            beat = wire.open_heartbeat(self.key, msg.data)
        except RefusedMessageError as exc:
            self._refuse("heartbeat", str(exc))
            return
        if self.beat is None or beat.sent_ms > self.beat.sent_ms:
            self.beat = beat

    def _refuse(self, kind: str, why: str, stream_seq: int = 0) -> None:
        self.refused[kind] += 1
        where = f" at stream sequence {stream_seq}" if stream_seq else ""
        log.warning("replica: refused a %s message%s: %s", kind, where, why)

    async def _subscribe(self, js: Any, start: int) -> Any:
        from nats.js import api

        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start),
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=30.0,
        )
        return await js.pull_subscribe(SUBJECT, durable=None, stream=STREAM, config=config)

    async def _follow(self, js: Any) -> None:
        sub = None
        progress = time.monotonic()
        try:
            while True:
                assert self.state is not None
                if sub is None:
                    try:
                        sub = await self._subscribe(js, self.state.stream_seq + 1)
                    except Exception as exc:  # noqa: BLE001 - broker away: keep serving
                        log.debug("replica: cannot subscribe (%s)", exc)
                        await asyncio.sleep(0.5)
                        continue
                try:
                    msgs = await sub.fetch(_FETCH, timeout=1.0)
                except TimeoutError:
                    msgs = []
                except Exception as exc:  # noqa: BLE001 - consumer lost (broker restarted)
                    log.debug("replica: fetch failed (%s); subscribing again", exc)
                    await self._drop(sub)
                    sub = None
                    await asyncio.sleep(0.2)
                    continue
                if msgs and await self._apply(msgs):
                    progress = time.monotonic()
                elif self._stalled(progress):
                    await self._check_truncated(js)
                    log.info("replica: head %d is out of reach; subscribing again", self._head())
                    await self._drop(sub)
                    sub = None
                    progress = time.monotonic()
                await self._note()
        finally:
            if sub is not None:
                await self._drop(sub)

    async def _check_truncated(self, js: Any) -> None:
        """A gap if the stream no longer holds the next change this replica needs."""
        assert self.state is not None
        try:
            info = await js.stream_info(STREAM)
        except Exception as exc:  # noqa: BLE001 - broker away: nothing to conclude
            log.debug("replica: no stream info (%s)", exc)
            return
        needed = self.state.stream_seq + 1
        if info.state.first_seq > needed:
            raise _Gap(self.state.applied + 1, 0)

    async def _drop(self, sub: Any) -> None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    def _head(self) -> int:
        return 0 if self.beat is None else self.beat.head

    def _stalled(self, progress: float) -> bool:
        assert self.state is not None
        return self._head() > self.state.applied and time.monotonic() - progress > _STALL

    async def _apply(self, msgs: list[Any]) -> bool:
        """Verify, order and apply one fetched batch; True if anything was applied."""
        assert self.state is not None
        batch: list[Applied] = []
        gap: _Gap | None = None
        for msg in msgs:
            stream_seq = int(msg.metadata.sequence.stream)
            try:
                change = wire.open_change(self.key, msg.data or b"")
            except RefusedMessageError as exc:
                self._refuse("forged" if "signature" in str(exc) else "junk", str(exc), stream_seq)
                continue
            expected = self.state.applied + len(batch) + 1
            if change.seq < expected:
                self._refuse("replay", f"change {change.seq} is already applied", stream_seq)
                continue
            if change.seq > expected:
                gap = _Gap(expected, change.seq)
                break
            batch.append(Applied(change.seq, stream_seq, change.committed_ms, change.body))
        if batch:
            try:
                self.state = await asyncio.to_thread(replica.apply, self.store, batch)
            except CeirError as exc:  # a verified but undecodable entry: never skip it
                log.exception("replica: cannot apply changes from %d", batch[0].seq)
                raise _Gap(batch[0].seq, batch[0].seq) from exc
        if gap is not None:
            raise gap
        return bool(batch)

    async def _note(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._noted < _NOTE_EVERY:
            return
        self._noted = now
        beat = self.beat
        state = self.state
        if state is not None:
            head = max(state.applied, 0 if beat is None else beat.head)
            seen = dataclasses.replace(
                state, head=head, heard_ms=state.heard_ms if beat is None else beat.sent_ms
            )
            metrics.set_replica(applied=state.applied, head=head, lag_seconds=seen.lag_seconds())
        if beat is not None:
            await asyncio.to_thread(
                replica.note,
                self.store,
                head=beat.head,
                head_ms=beat.head_ms,
                heard_ms=beat.sent_ms,
                refused=self._refused_base + sum(self.refused.values()),
            )

    # -- bootstrap -------------------------------------------------------------------

    async def _bootstrap(self) -> ReplicaState:
        delay = 0.5
        while True:
            try:
                state = await self._snapshot()
            except asyncio.CancelledError:
                raise
            except RefusedMessageError as exc:
                self._refuse("snapshot", str(exc))
            except Exception as exc:  # noqa: BLE001 - source away: try again, no service yet
                log.warning("replica: cannot bootstrap from %s (%s); retrying", self.source, exc)
            else:
                self.bootstraps += 1
                log.info(
                    "replica: bootstrapped from %s at change %d (%d devices)",
                    self.source,
                    state.applied,
                    state.devices,
                )
                return state
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _snapshot(self) -> ReplicaState:
        import grpc

        from ceir.v1 import replication_pb2, replication_pb2_grpc

        part = replication_pb2.SnapshotPart
        options = [("grpc.max_receive_message_length", _SNAPSHOT_BYTES)]
        metadata = None
        if self.source_token:
            metadata = (("authorization", f"Bearer {self.source_token}"),)
        tls = self.source_tls
        if tls is None:
            channel = grpc.aio.insecure_channel(self.source, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
            )
            channel = grpc.aio.secure_channel(self.source, credentials, options=options)
        async with channel:
            stub = replication_pb2_grpc.ReplicationStub(channel)
            hasher: wire.SnapshotHasher | None = None
            header: Any = None
            rows: dict[int, list[bytes]] = {
                p: [] for p in (part.SNAPSHOT_PART_DEVICES, part.SNAPSHOT_PART_TACS)
            }
            rows |= {part.SNAPSHOT_PART_CLONES: [], part.SNAPSHOT_PART_PAIRS: []}
            async for chunk in stub.Snapshot(replication_pb2.SnapshotRequest(), metadata=metadata):
                if chunk.part == part.SNAPSHOT_PART_HEADER:
                    header = chunk
                    hasher = wire.SnapshotHasher(
                        chunk.sequence,
                        chunk.committed_at_ms,
                        chunk.devices,
                        chunk.tacs,
                        chunk.clones,
                        chunk.pairs,
                    )
                    continue
                if hasher is None:
                    raise RefusedMessageError("snapshot does not start with its header")
                if chunk.part == part.SNAPSHOT_PART_END:
                    hasher.verify(self.key, chunk.signature)
                    break
                hasher.add(chunk.part, chunk.rows)
                if chunk.part not in rows:
                    raise RefusedMessageError(f"snapshot chunk of unknown part {chunk.part}")
                rows[chunk.part].append(chunk.rows)
            else:
                raise RefusedMessageError("snapshot ended without its signature")
        return await asyncio.to_thread(
            replica.replace,
            self.store,
            seq=header.sequence,
            committed_ms=header.committed_at_ms,
            device_rows=rows[part.SNAPSHOT_PART_DEVICES],
            tac_rows=rows[part.SNAPSHOT_PART_TACS],
            clone_rows=rows[part.SNAPSHOT_PART_CLONES],
            pair_rows=rows[part.SNAPSHOT_PART_PAIRS],
            expect=(header.devices, header.tacs, header.clones, header.pairs),
        )
