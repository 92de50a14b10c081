"""The server's transport: TLS or mutual TLS, where it may listen in clear, and its limits.

Rules:

- With ``tls_cert`` and ``tls_key`` the server speaks TLS; with ``client_ca`` too, every
  client must present a certificate signed by that CA (mutual TLS) and the certificate
  names the principal (:mod:`ceir.security.principals`).
- Without TLS it listens on loopback only. Any other address in clear needs
  ``insecure=True`` and logs a warning. So does a non-loopback address on which nobody
  is authenticated (no client CA, no tokens): everybody there would be an admin.
- Keepalive, idle and age limits mean a dead or stalled client cannot hold a
  connection, a stream or its memory forever.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceir.config import Settings
from ceir.errors import ConfigError
from ceir.security.certs import check_pair, read_pem
from ceir.security.tokens import TokenBook
from ceir.security.trust import CertDenyList

log = logging.getLogger("ceir.server.transport")


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportLimits:
    """Connection-level limits, in seconds unless named otherwise."""

    keepalive_time: float = 60.0
    """The server pings an idle connection this often..."""
    keepalive_timeout: float = 20.0
    """...and closes it when the ping is not answered in this time."""
    max_connection_idle: float = 600.0
    """A connection with no call for this long is closed (GOAWAY)."""
    max_connection_age: float = 3600.0
    """Every connection is recycled after this long (clients reconnect)..."""
    max_connection_age_grace: float = 300.0
    """...after its calls got this long to finish."""
    max_concurrent_streams: int = 256
    """Calls at once on one connection."""
    max_metadata_bytes: int = 16 * 1024
    handshake_timeout: float = 5.0
    """A connection that has not finished its handshake in this time is closed: 3,000
    half-open connections held 3,000 descriptors for 20 s and more without it."""


def server_options(
    max_message_bytes: int, limits: TransportLimits, *, reuseport: bool = False
) -> list[tuple[str, int]]:
    """Channel arguments for ``grpc.aio.server``."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", int(reuseport)),
        ("grpc.keepalive_time_ms", ms(limits.keepalive_time)),
        ("grpc.keepalive_timeout_ms", ms(limits.keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Refuse clients that ping more than every 10 s without data: a ping flood.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", ms(limits.max_connection_idle)),
        ("grpc.max_connection_age_ms", ms(limits.max_connection_age)),
        ("grpc.max_connection_age_grace_ms", ms(limits.max_connection_age_grace)),
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        ("grpc.max_metadata_size", limits.max_metadata_bytes),
        ("grpc.server_handshake_timeout_ms", ms(limits.handshake_timeout)),
    ]


def is_loopback(host: str) -> bool:
    """Whether *host* names this machine only (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class Security:
    """What secures the listening port."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    insecure: bool = False
    """Allow a non-loopback address without TLS or without authentication."""

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
        if self.client_ca is not None and self.tls_cert is None:
            raise ConfigError("--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> Security:
        return cls(
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            client_ca=settings.client_ca,
            insecure=settings.insecure,
        )

    def files(self) -> tuple[bytes, bytes, bytes | None]:
        """The certificate, key and client CA (TLS only), read and checked: the key must
        belong to the certificate. Needs no gRPC."""
        assert self.tls_cert is not None
        assert self.tls_key is not None
        cert = read_pem(self.tls_cert, "server certificate")
        key = read_pem(self.tls_key, "server key")
        ca = read_pem(self.client_ca, "client CA") if self.client_ca is not None else None
        check_pair(cert, key, self.tls_cert, self.tls_key)
        return cert, key, ca

    def credentials(self) -> Any:
        """``grpc.ssl_server_credentials`` for the configured files (TLS only)."""
        import grpc  # here, not at import: the supervisor checks files before it forks

        cert, key, ca = self.files()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )

    def check(self, host: str, *, authenticated: bool) -> None:
        """Raise ConfigError if *host* may not be listened on this way; warn if --insecure."""
        local = is_loopback(host)
        if not local and not self.tls:
            if not self.insecure:
                raise ConfigError(
                    f"refusing to listen on {host} without TLS: give --tls-cert and --tls-key, "
                    "listen on 127.0.0.1, or pass --insecure if the network is trusted"
                )
            log.warning("listening on %s WITHOUT TLS (--insecure): traffic is in clear", host)
        if not local and not authenticated:
            if not self.insecure:
                raise ConfigError(
                    f"refusing to listen on {host} with no authentication: every caller "
                    "would be an admin. Give --client-ca or create tokens (ceir token add), "
                    "or pass --insecure if the network is trusted"
                )
            log.warning("listening on %s WITHOUT authentication (--insecure)", host)

    def bind(
        self, server: Any, host: str, port: int, *, authenticated: bool, credentials: Any = None
    ) -> int:
        """Add the listening port to *server*, enforcing the rules; returns the port.

        With TLS, *credentials* (e.g. :meth:`ReloadableCredentials.credentials`) or, if None,
        fixed ones from :meth:`credentials`."""
        self.check(host, authenticated=authenticated)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if self.tls:
                creds = credentials if credentials is not None else self.credentials()
                return int(server.add_secure_port(address, creds))
            return int(server.add_insecure_port(address))
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {address}: {exc}") from exc

    def describe(self, *, tokens: int | None, denied: int | None = None) -> str:
        """The security part of the start-up line; *tokens* None: no token file configured;
        *denied*: how many client certificates the deny-list revokes (None: no list)."""
        if not self.mutual and tokens is None:
            if not self.tls:
                return OPEN_DEFAULT
            return "TLS, open: no authentication (every caller is an admin)"
        parts = []
        if self.mutual:
            parts.append("mutual TLS (client certificates)")
        elif self.tls:
            parts.append("TLS")
        else:
            parts.append("no TLS")
        if tokens:
            parts.append(f"{tokens} bearer token(s)")
        elif tokens == 0:
            parts.append("0 bearer tokens" + ("" if self.mutual else ": every call is refused"))
        if denied is not None:
            parts.append(f"{denied} revoked certificate(s) denied")
        return ", ".join(parts)


OPEN_DEFAULT = "open: no TLS, no authentication (the embedded default, loopback only)"
"""The start-up line's security part when nothing is configured."""


def check_settings(settings: Settings) -> str:
    """Validate the security *settings* before any port is opened; the start-up description.

    For a supervisor that opens the port itself (``ceir serve --workers``): it imports no
    gRPC and builds no credentials, so the workers it forks start from a process that never
    ran gRPC's C core (which does not survive a fork).
    """
    security = Security.from_settings(settings)
    book = TokenBook.load(settings.tokens) if settings.tokens is not None else None
    tokens = None if book is None else len(book)  # a token file, even empty, authenticates
    security.check(settings.host, authenticated=security.mutual or tokens is not None)
    if security.tls:
        security.files()  # unreadable or mismatched files fail here, not in a worker
    denied = CertDenyList.load(settings.cert_deny) if settings.cert_deny is not None else None
    return security.describe(tokens=tokens, denied=None if denied is None else len(denied))


class ReloadableCredentials:
    """Server TLS credentials whose files can be read again while serving (SIGHUP).

    gRPC asks :meth:`_fetch` at each new handshake; after :meth:`reload` it gets the new
    certificate, key and client CA once, and keeps them. Connections already open keep
    the certificate they were made with."""

    def __init__(self, security: Security) -> None:
        self.security = security
        self._pending: Any = None

    def _configuration(self) -> Any:
        import grpc

        cert, key, ca = self.security.files()
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def credentials(self) -> Any:
        """The credentials to bind with (reads and checks the files)."""
        import grpc

        return grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            self._fetch,
            require_client_authentication=self.security.mutual,
        )

    def _fetch(self) -> Any:
        pending, self._pending = self._pending, None
        return pending

    def reload(self) -> str:
        """Read the files again (ConfigError, and the old ones stay, if they do not fit)."""
        self._pending = self._configuration()
        files = [self.security.tls_cert, self.security.tls_key, self.security.client_ca]
        return "TLS files " + ", ".join(str(f) for f in files if f is not None)
