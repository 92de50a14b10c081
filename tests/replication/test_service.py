"""Which replication services a server runs, and the settings they need."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceir.config import Settings
from ceir.errors import ConfigError
from ceir.record import Record
from ceir.replication.keys import generate
from ceir.replication.service import replication_services
from ceir.store import Store


def test_publish_needs_a_signing_key() -> None:
    """--publish without --signing-key is refused with the fix named."""
    with pytest.raises(ConfigError, match="--signing-key"):
        Settings(publish="nats://127.0.0.1:4222")


def test_a_replica_needs_its_broker_source_and_key() -> None:
    """A replica without --nats or --verify-key is refused."""
    with pytest.raises(ConfigError, match="--nats, --source and --verify-key"):
        Settings(source="127.0.0.1:50051")


def test_a_replica_never_takes_over_a_central_store(store: Store, tmp_path: Path) -> None:
    """A store with a change log of its own is a central's: a replica refuses to follow
    into it (a bootstrap would replace its devices)."""
    _signing, verify = generate(tmp_path / "keys")
    store.put_devices([((35209900176148).to_bytes(8, "big"), Record())])
    settings = Settings(source="127.0.0.1:50051", nats="nats://127.0.0.1:4222", verify_key=verify)
    with pytest.raises(ConfigError, match="central register"):
        replication_services(settings, store)


def test_a_plain_server_runs_no_replication_service(store: Store) -> None:
    """Without --publish or --source nothing replication runs."""
    assert replication_services(Settings(), store) == []
