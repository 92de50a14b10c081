"""Signed envelopes: what travels between the central register and its replicas. Pure.

A change message is ``CEIRC1 | sequence u64 | commit time u64 (ms) | body | signature``;
a heart-beat ``CEIRH1 | head sequence u64 | head commit time u64 | sent at u64 | signature``;
a snapshot is signed once, at its end, over the SHA-256 of its header and every row chunk.
Signatures are Ed25519 over everything before them, so the sequence a replica orders by
is the signed one, not the broker's.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ceir.errors import RefusedMessageError

__all__ = [
    "Change",
    "Heartbeat",
    "SnapshotHasher",
    "open_change",
    "open_heartbeat",
    "seal_change",
    "seal_heartbeat",
]

_CHANGE = b"CEIRC1"
_HEARTBEAT = b"CEIRH1"
_SNAPSHOT = b"CEIRS2"  # 2: the header counts clone states and pairs too
_HEAD = struct.Struct(">QQ")
_BEAT = struct.Struct(">QQQ")
_SNAP = struct.Struct(">QQQQQQ")
_SIG = 64


@dataclass(frozen=True, slots=True)
class Change:
    """A verified change message: one change-log entry."""

    seq: int
    committed_ms: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A verified heart-beat: where the central's log stands."""

    head: int
    head_ms: int
    sent_ms: int


def seal_change(key: Ed25519PrivateKey, seq: int, committed_ms: int, body: bytes) -> bytes:
    signed = _CHANGE + _HEAD.pack(seq, committed_ms) + body
    return signed + key.sign(signed)


def _verified(key: Ed25519PublicKey, data: bytes, magic: bytes, least: int) -> bytes:
    if len(data) < len(magic) + least + _SIG or not data.startswith(magic):
        raise RefusedMessageError("not a ceir message (junk bytes)")
    signed, signature = data[:-_SIG], data[-_SIG:]
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        raise RefusedMessageError("signature does not verify (forged or damaged)") from None
    return signed[len(magic) :]


def open_change(key: Ed25519PublicKey, data: bytes) -> Change:
    """The change in *data*; RefusedMessageError unless it is well formed and verifies."""
    rest = _verified(key, data, _CHANGE, _HEAD.size)
    seq, committed_ms = _HEAD.unpack_from(rest)
    return Change(seq, committed_ms, rest[_HEAD.size :])


def seal_heartbeat(key: Ed25519PrivateKey, head: int, head_ms: int, sent_ms: int) -> bytes:
    signed = _HEARTBEAT + _BEAT.pack(head, head_ms, sent_ms)
    return signed + key.sign(signed)


def open_heartbeat(key: Ed25519PublicKey, data: bytes) -> Heartbeat:
    rest = _verified(key, data, _HEARTBEAT, _BEAT.size)
    if len(rest) != _BEAT.size:
        raise RefusedMessageError("heart-beat has the wrong length")
    return Heartbeat(*_BEAT.unpack(rest))


class SnapshotHasher:
    """The running digest a snapshot's signature covers: header, then each row chunk."""

    def __init__(
        self, seq: int, committed_ms: int, devices: int, tacs: int, clones: int, pairs: int
    ) -> None:
        header = _SNAP.pack(seq, committed_ms, devices, tacs, clones, pairs)
        self._hash = hashlib.sha256(_SNAPSHOT + header)

    def add(self, part: int, rows: bytes) -> None:
        self._hash.update(struct.pack(">BI", part, len(rows)))
        self._hash.update(rows)

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return key.sign(self._hash.digest())

    def verify(self, key: Ed25519PublicKey, signature: bytes) -> None:
        try:
            key.verify(signature, self._hash.digest())
        except InvalidSignature:
            raise RefusedMessageError("snapshot signature does not verify") from None
