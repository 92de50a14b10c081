"""Settings: frozen, keyword-only, no side effects.

Each field is a ``ceir serve`` flag of the same name and a ``CEIR_`` environment
variable (``--db`` / ``CEIR_DB``, ``--unknown-status`` / ``CEIR_UNKNOWN_STATUS``, ...).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from ceir.errors import ConfigError
from ceir.record import Status

DEFAULT_DB = Path("var/ceir")
DEFAULT_PORT = 50051
MAX_BATCH = 10_000


class UnknownStatus(enum.Enum):
    """What an IMEI that is not in the register gets: the regime."""

    BLACKLISTED = "blacklisted"
    """Whitelist regime (Indonesia since 2020): unknown devices are refused."""
    GREYLISTED = "greylisted"
    """Grace period: unknown devices attach but are tracked."""
    WHITELISTED = "whitelisted"
    """Blacklist-only regime: only blocked devices are refused."""

    @property
    def status(self) -> Status:
        return Status[self.name]


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything ``ceir serve`` can be told."""

    db: Path = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    unknown_status: UnknownStatus = UnknownStatus.BLACKLISTED
    demo: bool = True
    """Load demo data into an empty store at start."""
    max_batch: int = MAX_BATCH
    """Most CheckIMEIRequests in one batch or stream message."""
    max_message_bytes: int = 4 * 1024 * 1024
    grace: float = 10.0
    """Seconds in-flight calls get to finish after SIGTERM/SIGINT."""
    workers: int = 0
    """Server processes sharing the port (SO_REUSEPORT); 0: one per core."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range 0..65535")
        if not 1 <= self.max_batch <= MAX_BATCH:
            raise ConfigError(f"max_batch {self.max_batch} must be between 1 and {MAX_BATCH}")
        if self.max_message_bytes < 1024:
            raise ConfigError(f"max_message_bytes {self.max_message_bytes} is below 1024")
        if self.workers < 0:
            raise ConfigError(f"workers {self.workers} must not be negative (0: one per core)")
        if self.grace < 0:
            raise ConfigError(f"grace {self.grace} must not be negative")

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
