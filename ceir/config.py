"""Settings: frozen, keyword-only, no side effects.

Each field is a ``ceir serve`` flag of the same name and a ``CEIR_`` environment
variable (``--db`` / ``CEIR_DB``, ``--unknown-status`` / ``CEIR_UNKNOWN_STATUS``, ...).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ceir.errors import ConfigError
from ceir.logs import LogFormat
from ceir.record import Status
from ceir.security.principals import check_operator_id

DEFAULT_DB = Path("var/ceir")
DEFAULT_PORT = 50051
DEFAULT_TOKENS = Path("var/tokens.json")
DEFAULT_S13 = "127.0.0.1:3868"
DEFAULT_DIAMETER_HOST = "ceir.localdomain"
DEFAULT_DIAMETER_REALM = "localdomain"
OFF = "off"
"""The value of a face's HOST:PORT setting that disables it."""
DEFAULT_SBI = "127.0.0.1:7777"
"""Where the N5g-eir face (HTTP/2) listens unless told otherwise."""
MAX_BATCH = 10_000
DEFAULT_GRACE = 10.0
"""Seconds in-flight calls get to finish after SIGTERM/SIGINT, on every face."""
WEB_OFF = OFF
DEFAULT_WEB = "127.0.0.1:8080"
DEFAULT_LOG_FORMAT = LogFormat.TEXT
DEFAULT_STAGE_ABOVE = 100_000
"""Two-person rule: new devices one import may add before a second principal must approve."""
DEFAULT_STAGE_LOST_STOLEN_ABOVE = 1_000
"""Blocks and unblocks one lost-stolen file may make before it needs a second principal:
a mass blacklisting cuts phones off, so its threshold is small (0: the general one)."""
DEFAULT_CHANNEL_DAILY_ABOVE = 1_000_000
"""Rolling 24 hours: devices' answers every principal of one channel together may change
(files and single writes) before further files are staged and single writes refused."""
DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE = 10_000
"""The same for the lost-stolen channel (blocks and unblocks)."""
DEFAULT_LATE_GRANDFATHERING_DAYS = 180
"""Days after the grandfathering cutoff during which operator dumps may grandfather devices
without approval; later, any file that grandfathers is staged (store policy, ceir
eligibility --late-grandfathering-days)."""
DEFAULT_TEMPORARY_DAYS = 90
"""Retention: days after a visitor registration ends before it is deleted (registered
<= 90 days + 90 = gone within 6 months, as the regulation asks)."""
DEFAULT_IDENTITY_DAYS = 365
"""Retention: days after an arrival before its identity token is deleted (>= the 180-day
customs cooldown)."""
DEFAULT_REJECTS_DAYS = 90
"""Retention: days after an import before its rejected rows (the ``rejects`` table, which
may hold what a sender put in the wrong column) are deleted."""
DEFAULT_OBSERVATION_DAYS = 180
"""Retention: days after a SIM was last seen with a device before the sighting (its token,
at a replica its sealed IMSI) is deleted (DIRBS's lookback)."""

DEFAULT_CHANGES_KEEP_DAYS = 7.0
"""Retention of the change log (and of the broker's stream, which the relay trims with
it): days an entry the stream has acknowledged is kept, for replicas catching up; a
replica further behind bootstraps again."""


def field_default(cls: type, name: str) -> Any:
    """The default the dataclass *cls* declares for field *name*: what a CLI flag shows
    and uses, so the default is written once (slots dataclasses keep no class attribute)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is dataclasses.MISSING:
                raise LookupError(f"{cls.__name__}.{name} has no default")
            return f.default
    raise LookupError(f"{cls.__name__} has no field {name}")


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


_DIAMETER_IDENTITY = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


class UnknownAnswer(enum.Enum):
    """How a core-network face answers a valid IMEI that is not in the register."""

    STATUS = "status"
    """With the ``--unknown-status`` answer, as CheckIMEI does (the whitelist regime's deny)."""
    NOT_FOUND = "not-found"
    """The strict 3GPP answer: S13 Experimental-Result 5422 DIAMETER_ERROR_EQUIPMENT_UNKNOWN,
    N5g-eir 404 with cause ERROR_EQUIPMENT_UNKNOWN."""


def parse_listen(value: str, flag: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port); None for ``off``."""
    if value.strip().lower() == OFF:
        return None
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"{flag} {value!r} is not HOST:PORT (port 0..65535, [addr]:PORT for IPv6) or 'off'"
        )
    return host, int(port)


def format_address(host: str, port: int) -> str:
    """``host:port``, ``[v6]:port`` for IPv6: the inverse of :func:`parse_listen`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether *host* (an address or ``localhost``) is on this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Everything ``ceir serve`` can be told."""

    db: Path = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    unknown_status: UnknownStatus = UnknownStatus.BLACKLISTED
    demo: bool = True
    """Load demo data into an empty store at start (never when security is configured)."""
    max_batch: int = MAX_BATCH
    """Most CheckIMEIRequests in one batch or stream message."""
    max_message_bytes: int = 4 * 1024 * 1024
    grace: float = DEFAULT_GRACE
    """Seconds in-flight calls get to finish after SIGTERM/SIGINT."""
    # -- security and hostile-input limits (ceir.server.transport, ceir.server.access) --
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    """With TLS: clients must present a certificate signed by this CA (mutual TLS)."""
    tokens: Path | None = None
    """Bearer-token file (``ceir token add``); None: no token authentication."""
    cert_deny: Path | None = None
    """Deny-list of revoked client certificates (``ceir certs revoke``); needs client_ca."""
    max_connections_per_address: int = 256
    """Concurrent connections one remote address may hold on each face, per worker
    process; the excess is closed (:mod:`ceir.server.connections`); 0: no cap."""
    watch_interval: float = 1.0
    """Seconds between two looks at the token file and the deny-list: a change is loaded
    (revocation is live, in every worker); 0: on SIGHUP only."""
    insecure: bool = False
    """Allow a non-loopback address without TLS or without authentication."""
    consumer_rate: float = 10.0
    """DeviceCheck calls per second per client (token bucket refill); 0: unlimited."""
    consumer_burst: int = 50
    write_rate: float = 5.0
    """Single writes (Register, lost/stolen) per second per principal; 0: unlimited."""
    write_burst: int = 500
    stage_above: int = DEFAULT_STAGE_ABOVE
    """Two-person rule: an ImportFeed changing more devices' answers (new devices, blocks,
    unblocks, upgrades) is staged; 0: never."""
    stage_lost_stolen_above: int = DEFAULT_STAGE_LOST_STOLEN_ABOVE
    """The same for a lost-stolen ImportFeed (the smaller of the two applies). Both also
    bound one principal over a rolling 24 hours, files and single writes together."""
    channel_daily_above: int = DEFAULT_CHANNEL_DAILY_ABOVE
    """Rolling 24 hours, every principal of one channel together (0: no channel limit)."""
    channel_daily_lost_stolen_above: int = DEFAULT_CHANNEL_DAILY_LOST_STOLEN_ABOVE
    """The same for the lost-stolen channel (0: no channel limit)."""
    max_stream_messages: int = 1_000_000
    """Most messages in one client stream."""
    stream_idle: float = 300.0
    """Seconds a client stream may stay silent before the server ends it."""
    workers: int = 0
    """Server processes sharing the port (SO_REUSEPORT); 0: one per core."""
    # -- the S13 Diameter face (ceir.network.s13) --
    s13: str = DEFAULT_S13
    """``HOST:PORT`` of the S13 (Diameter over TCP) face, or ``off``."""
    diameter_host: str = DEFAULT_DIAMETER_HOST
    """This node's Diameter identity (Origin-Host)."""
    diameter_realm: str = DEFAULT_DIAMETER_REALM
    """This node's Diameter realm (Origin-Realm)."""
    s13_peers: tuple[str, ...] = ()
    """Origin-Hosts of the MMEs allowed to connect, each ``HOST`` or ``HOST=MCC-MNC`` (the
    operator it is counted under); empty: any, on loopback only."""
    s13_unknown: UnknownAnswer = UnknownAnswer.STATUS
    web: str = DEFAULT_WEB
    """HOST:PORT of the consumer page, /api/v1, /metrics and /version; ``off``: none."""
    metrics: bool = True
    """Record metrics (off only to measure what recording them costs)."""
    log_format: LogFormat = DEFAULT_LOG_FORMAT
    """``text`` lines or ``json`` lines (time, level, event, request id, principal, ...)."""
    # -- replication (ceir.replication): the central publishes, replicas follow --
    publish: str | None = None
    """Central: relay every committed change to this NATS JetStream broker (nats://HOST:PORT)."""
    signing_key: Path | None = None
    """Central: Ed25519 key that signs changes and snapshots (``ceir replica keygen``)."""
    changes_keep_days: float = DEFAULT_CHANGES_KEEP_DAYS
    """Central: days the relay keeps published change-log entries (and stream messages)."""
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds: Path | None = None
    """NATS credentials file (instead of user and password)."""
    nats: str | None = None
    """Replica: the broker to follow (nats://HOST:PORT)."""
    source: str | None = None
    """Replica: the central register's gRPC address (HOST:PORT) to bootstrap from."""
    verify_key: Path | None = None
    """Replica: the central's public key; only what verifies under it is applied."""
    source_token: str | None = None
    """Replica: bearer token (role replica) for the central, when it requires one."""
    source_ca: Path | None = None
    """Replica: CA certificate of the central's TLS server certificate (bootstrap over TLS)."""
    source_cert: Path | None = None
    """Replica: client certificate (role replica) presented to the central (mutual TLS)."""
    source_key: Path | None = None
    """Replica: the key of ``source_cert``."""
    operator: str | None = None
    """Replica: the operator it serves (MCC-MNC, e.g. 510-10), for logs and status."""
    # -- clone detection (ceir.clones) --
    observe: bool = True
    """Record the SIMs devices attach with and detect clones. ``ceir serve`` does the
    recording in a recorder process per site (ceir.clones.process): a worker only hands its
    sightings over (ceir.sightings), so the answers do not wait for it."""
    clone_conditions: Path | None = None
    """Central: a TOML file of clone conditions replacing the defaults (ceir.clones.conditions)."""
    observations_key: Path | None = None
    """Replica: Ed25519 key that signs the sightings it sends upstream (``ceir replica keygen``)."""
    observation_keys: Path | None = None
    """Central: directory of operators' public keys ``<MCC-MNC>.pem``; their upstream
    sightings (stream CEIR_OBSERVATIONS on the --publish broker) are ingested."""
    # -- the N5g-eir HTTP/2 face (ceir.network.n5g_eir) and NRF registration --
    sbi: str = DEFAULT_SBI
    """``HOST:PORT`` of the N5g-eir face (HTTP/2, TS 29.511), or ``off``."""
    sbi_unknown: UnknownAnswer = UnknownAnswer.STATUS
    """N5g-eir's answer for a valid PEI not in the register."""
    nrf: str | None = None
    """The NRF's apiRoot (``http://`` or ``https://``) to register the N5g-eir face with."""

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
        if self.consumer_rate < 0 or self.consumer_burst < 1:
            raise ConfigError("consumer_rate must be >= 0 and consumer_burst >= 1")
        if (
            self.write_rate < 0
            or self.write_burst < 1
            or self.stage_above < 0
            or self.stage_lost_stolen_above < 0
            or self.channel_daily_above < 0
            or self.channel_daily_lost_stolen_above < 0
        ):
            raise ConfigError(
                "write_rate, stage_above and the channel limits must be >= 0, write_burst >= 1"
            )
        self._check_revocation()
        if self.max_stream_messages < 1 or self.stream_idle <= 0:
            raise ConfigError("max_stream_messages must be >= 1 and stream_idle > 0")
        s13 = self.s13_address
        if s13 is not None and not self.s13_peers and not is_loopback(s13[0]):
            raise ConfigError(
                f"--s13 {self.s13} is not a loopback address: name the MMEs allowed to "
                "connect with --s13-peers HOST,... (their Diameter Origin-Hosts)"
            )
        for name, value in (
            ("diameter-host", self.diameter_host),
            ("diameter-realm", self.diameter_realm),
        ):
            if not _DIAMETER_IDENTITY.fullmatch(value):
                raise ConfigError(
                    f"--{name} {value!r} is not a Diameter identity (a host or realm name "
                    "such as ceir.localdomain)"
                )
        self.web_address  # noqa: B018 - validates --web
        self.s13_peer_operators  # noqa: B018 - validates --s13-peers
        self._check_replication()
        self._check_sbi()

    def _check_revocation(self) -> None:
        if self.cert_deny is not None and self.client_ca is None:
            raise ConfigError("--cert-deny lists revoked client certificates: it needs --client-ca")
        if self.max_connections_per_address < 0:
            raise ConfigError("max_connections_per_address must be >= 0 (0: no cap)")
        if self.watch_interval < 0:
            raise ConfigError(f"watch_interval {self.watch_interval} must not be negative")

    def _check_replication(self) -> None:
        if self.changes_keep_days < 0:
            raise ConfigError(f"--changes-keep-days {self.changes_keep_days:g} is negative")
        if self.publish is not None and self.signing_key is None:
            raise ConfigError("--publish needs --signing-key (make one with ceir replica keygen)")
        if self.source is not None and (self.nats is None or self.verify_key is None):
            raise ConfigError("a replica needs --nats, --source and --verify-key")
        if self.source is not None and self.publish is not None:
            raise ConfigError("a replica does not publish: drop --publish")
        if (self.source_cert is None) != (self.source_key is None):
            raise ConfigError("--source-cert and --source-key go together: give both or neither")
        if self.source_cert is not None and self.source_ca is None:
            raise ConfigError(
                "--source-cert needs --source-ca (the central's CA): a client certificate "
                "is mutual TLS"
            )

    def _check_sbi(self) -> None:
        """--sbi is HOST:PORT or off; --nrf an http(s) URL, and only with --sbi."""
        sbi = self.sbi_address
        if self.nrf is None:
            return
        parts = urlsplit(self.nrf)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--nrf {self.nrf!r} is not the http:// or https:// URL of an NRF")
        if sbi is None:
            raise ConfigError("--nrf registers the N5g-eir face: it needs --sbi, not 'off'")

    @property
    def sbi_address(self) -> tuple[str, int] | None:
        """(host, port) of the N5g-eir face; None when it is off."""
        return parse_listen(self.sbi, "--sbi")

    @property
    def s13_peer_operators(self) -> dict[str, str]:
        """--s13-peers as Origin-Host (lower case) -> operator id (``""`` when not given)."""
        out: dict[str, str] = {}
        for entry in self.s13_peers:
            host, _, operator = entry.partition("=")
            if operator:
                try:
                    check_operator_id(operator)
                except ConfigError as exc:
                    raise ConfigError(f"--s13-peers {entry}: {exc}") from exc
            out[host.strip().lower()] = operator
        return out

    @property
    def s13_address(self) -> tuple[str, int] | None:
        """(host, port) of the S13 face; None when it is off."""
        return parse_listen(self.s13, "--s13")

    @property
    def web_address(self) -> tuple[str, int] | None:
        """(host, port) of the web face; None when it is off."""
        return parse_listen(self.web, "--web")

    @property
    def secured(self) -> bool:
        """Whether security is configured (a token file or TLS): no demo data then."""
        return self.tokens is not None or self.tls_cert is not None

    @property
    def replica(self) -> bool:
        """Whether this server is a read replica (it follows a source, serves no writes)."""
        return self.source is not None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
