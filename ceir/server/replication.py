"""The Replication service: signed snapshots of the hot table, digests, and status.

On the central register ``Snapshot`` streams the hot table (devices, then TACs) as of one
change-log sequence, from one read transaction, signed at the end with the register's
key; a replica bootstraps from it. ``Digest`` gives per-key-range SHA-256 digests at the
sequence it names (``ceir verify`` compares them). ``Status`` says where this server
stands: the central's head, or a replica's applied and head sequence and its lag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.errors import ReplicationError
from ceir.replication.wire import SnapshotHasher
from ceir.store import Store, changes, replica
from ceir.v1 import replication_pb2, replication_pb2_grpc

__all__ = ["Replication"]

_PART = replication_pb2.SnapshotPart
_ROLE = replication_pb2.ReplicationRole


class Replication(replication_pb2_grpc.ReplicationServicer):
    """Serves *store*; signs snapshots with *key* (the central; None on a replica)."""

    def __init__(self, store: Store, key: Ed25519PrivateKey | None, *, is_replica: bool) -> None:
        self.store = store
        self.key = key
        self.is_replica = is_replica
        self.refused = 0

    async def Snapshot(
        self, request: replication_pb2.SnapshotRequest, context: Any
    ) -> AsyncIterator[replication_pb2.SnapshotChunk]:
        if self.key is None or self.is_replica:
            raise ReplicationError(
                "this server does not sign snapshots: bootstrap from the central register "
                "(ceir serve --signing-key)"
            )
        chunks = self._chunks(self.key)
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            chunks.close()

    def _chunks(
        self, key: Ed25519PrivateKey
    ) -> Generator[replication_pb2.SnapshotChunk, None, None]:
        with replica.hot_snapshot(self.store) as snap:
            yield replication_pb2.SnapshotChunk(
                part=_PART.SNAPSHOT_PART_HEADER,
                sequence=snap.seq,
                committed_at_ms=snap.committed_ms,
                devices=snap.devices,
                tacs=snap.tacs,
                clones=snap.clones,
                pairs=snap.pairs,
            )
            hasher = SnapshotHasher(
                snap.seq, snap.committed_ms, snap.devices, snap.tacs, snap.clones, snap.pairs
            )
            for rows in snap.device_chunks():
                hasher.add(_PART.SNAPSHOT_PART_DEVICES, rows)
                yield replication_pb2.SnapshotChunk(part=_PART.SNAPSHOT_PART_DEVICES, rows=rows)
            for rows in snap.tac_chunks():
                hasher.add(_PART.SNAPSHOT_PART_TACS, rows)
                yield replication_pb2.SnapshotChunk(part=_PART.SNAPSHOT_PART_TACS, rows=rows)
            for rows in snap.clone_chunks():
                hasher.add(_PART.SNAPSHOT_PART_CLONES, rows)
                yield replication_pb2.SnapshotChunk(part=_PART.SNAPSHOT_PART_CLONES, rows=rows)
            for rows in snap.pair_chunks():
                hasher.add(_PART.SNAPSHOT_PART_PAIRS, rows)
                yield replication_pb2.SnapshotChunk(part=_PART.SNAPSHOT_PART_PAIRS, rows=rows)
            yield replication_pb2.SnapshotChunk(
                part=_PART.SNAPSHOT_PART_END, signature=hasher.sign(key)
            )

    async def Digest(
        self, request: replication_pb2.DigestRequest, context: Any
    ) -> replication_pb2.DigestResponse:
        seq, ranges = await asyncio.to_thread(replica.digests, self.store)
        return replication_pb2.DigestResponse(
            sequence=seq,
            ranges=[
                replication_pb2.RangeDigest(range=name, count=count, sha256=digest)
                for name, count, digest in ranges
            ],
        )

    async def Status(
        self, request: replication_pb2.ReplicationStatusRequest, context: Any
    ) -> replication_pb2.ReplicationStatusResponse:
        return status(self.store, is_replica=self.is_replica)


def status(store: Store, *, is_replica: bool) -> replication_pb2.ReplicationStatusResponse:
    """Where *store* stands, as the Status RPC says it."""
    if not is_replica:
        head, _ = changes.head(store)
        return replication_pb2.ReplicationStatusResponse(
            role=_ROLE.REPLICATION_ROLE_CENTRAL,
            applied_sequence=head,
            head_sequence=head,
            bootstrapped=True,
        )
    state = replica.state(store)
    if state is None:
        return replication_pb2.ReplicationStatusResponse(role=_ROLE.REPLICATION_ROLE_REPLICA)
    return replication_pb2.ReplicationStatusResponse(
        role=_ROLE.REPLICATION_ROLE_REPLICA,
        applied_sequence=state.applied,
        head_sequence=max(state.head, state.applied),
        lag_seconds=state.lag_seconds(int(time.time() * 1000)),
        bootstrapped=True,
        refused=state.refused,
    )
