"""Which replication services a server runs: the relay on a publishing central, the
follower on a replica (each in one process of the site)."""

from __future__ import annotations

from typing import Any

from ceir.config import Settings
from ceir.errors import ConfigError
from ceir.replication.broker import Broker
from ceir.replication.keys import load_signing_key, load_verify_key
from ceir.store import Store, changes, replica

__all__ = ["replication_services"]


def broker_for(settings: Settings, url: str) -> Broker:
    return Broker(url, settings.nats_user, settings.nats_password, settings.nats_creds)


def replication_services(settings: Settings, store: Store) -> list[Any]:
    """The relay or the follower *settings* ask for (none for a plain server)."""
    if settings.publish is not None and settings.signing_key is not None:
        from ceir.replication.publisher import Relay

        key = load_signing_key(settings.signing_key)
        broker = broker_for(settings, settings.publish)
        return [Relay(store, broker, key, keep_days=settings.changes_keep_days)]
    if settings.replica and settings.nats and settings.verify_key and settings.source:
        from ceir.replication.follower import Follower, SourceTLS

        if replica.state(store) is None and changes.head(store)[0] > 0:
            raise ConfigError(
                f"{store.path} holds a central register (it has a change log of its own); "
                "give the replica a --db of its own"
            )
        return [
            Follower(
                store,
                broker_for(settings, settings.nats),
                load_verify_key(settings.verify_key),
                settings.source,
                source_token=settings.source_token,
                source_tls=None
                if settings.source_ca is None
                else SourceTLS.load(settings.source_ca, settings.source_cert, settings.source_key),
                operator=settings.operator,
            )
        ]
    return []
