"""Signed envelopes: what verifies opens to what was sealed; anything else is refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ceir.errors import RefusedMessageError
from ceir.replication import wire

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key()
OTHER = Ed25519PrivateKey.generate()


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=2048))
def test_a_sealed_change_opens_to_what_was_sealed(seq: int, at: int, body: bytes) -> None:
    """seal -> open round-trips sequence, commit time and body."""
    assert wire.open_change(PUBLIC, wire.seal_change(KEY, seq, at, body)) == wire.Change(
        seq, at, body
    )


@given(st.binary(max_size=300))
def test_junk_is_refused(data: bytes) -> None:
    """Arbitrary bytes never open (a forgery cannot be typed by chance)."""
    with pytest.raises(RefusedMessageError):
        wire.open_change(PUBLIC, data)


def test_a_message_signed_by_another_key_is_refused() -> None:
    """A well-formed message under a key that is not the central's is a forgery."""
    with pytest.raises(RefusedMessageError, match="signature"):
        wire.open_change(PUBLIC, wire.seal_change(OTHER, 7, 1, b"\x01body"))


@given(st.integers(0, 200), st.integers(0, 255))
def test_any_changed_byte_is_refused(position: int, value: int) -> None:
    """Changing one byte anywhere (the sequence included) breaks the signature."""
    sealed = bytearray(wire.seal_change(KEY, 42, 1_700_000_000_000, b"x" * 100))
    position %= len(sealed)
    if sealed[position] == value:
        value ^= 1
    sealed[position] = value
    with pytest.raises(RefusedMessageError):
        wire.open_change(PUBLIC, bytes(sealed))


def test_a_heartbeat_round_trips_and_is_not_a_change() -> None:
    """Heart-beats open as heart-beats only (a heart-beat is not a change, nor back)."""
    beat = wire.seal_heartbeat(KEY, 9, 8, 7)
    assert wire.open_heartbeat(PUBLIC, beat) == wire.Heartbeat(9, 8, 7)
    with pytest.raises(RefusedMessageError):
        wire.open_change(PUBLIC, beat)
    with pytest.raises(RefusedMessageError):
        wire.open_heartbeat(PUBLIC, wire.seal_change(KEY, 9, 8, b""))


def test_a_snapshot_signature_covers_every_chunk_and_the_header() -> None:
    """A snapshot verifies only with the same header and the same chunks in order."""
    signer = wire.SnapshotHasher(5, 1, 2, 0, 0, 0)
    signer.add(2, b"a" * 40)
    signature = signer.sign(KEY)
    same = wire.SnapshotHasher(5, 1, 2, 0, 0, 0)
    same.add(2, b"a" * 40)
    same.verify(PUBLIC, signature)
    for seq, rows in ((6, b"a" * 40), (5, b"b" * 40)):
        other = wire.SnapshotHasher(seq, 1, 2, 0, 0, 0)
        other.add(2, rows)
        with pytest.raises(RefusedMessageError):
            other.verify(PUBLIC, signature)
