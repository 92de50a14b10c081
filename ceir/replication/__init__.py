"""Read replicas: the central register's change log relayed over NATS JetStream.

- :mod:`ceir.replication.wire` — signed envelopes for changes, heart-beats and snapshots;
- :mod:`ceir.replication.keys` — the Ed25519 signing and verify keys;
- :mod:`ceir.replication.publisher` — the relay: change log -> broker, with heart-beats;
- :mod:`ceir.replication.follower` — snapshot + stream -> the replica's store.

The broker is a carrier, not the truth: the central's log is, and a replica applies only
what verifies under the central's public key, in sequence.
"""

from __future__ import annotations

STREAM = "CEIR_CHANGES"
SUBJECT = "ceir.changes"
HEARTBEAT_SUBJECT = "ceir.heartbeat"

__all__ = ["HEARTBEAT_SUBJECT", "STREAM", "SUBJECT"]
