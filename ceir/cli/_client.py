"""Flags and channel for commands that call a running server: TLS, client certificate, token."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ceir.cli.app import EXIT_FORBIDDEN, EXIT_UNAVAILABLE

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """How to reach and authenticate to the server."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self, address: str) -> Any:
        """A channel to *address*: TLS when a CA is given (with the client certificate)."""
        import grpc

        if self.ca is None:
            return grpc.insecure_channel(address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )
        return grpc.secure_channel(address, credentials)


def client_options(fn: F) -> F:
    """Add --ca, --cert, --key and --token to a command (see :func:`auth_from`)."""
    path = click.Path(path_type=Path, dir_okay=False, exists=True)
    for decorator in reversed(
        (
            click.option("--ca", type=path, help="CA certificate of the server: use TLS."),
            click.option("--cert", type=path, help="Client certificate (mutual TLS)."),
            click.option("--key", type=path, help="Client key (mutual TLS)."),
            click.option("--token", help="Bearer token (from `ceir token add`)."),
        )
    ):
        fn = decorator(fn)
    return fn


def auth_from(
    ca: Path | None, cert: Path | None, key: Path | None, token: str | None
) -> ClientAuth:
    """The ClientAuth for the flags :func:`client_options` added."""
    return ClientAuth(ca, cert, key, token or None)


def call_failed(exc: Any, address: str) -> NoReturn:
    """Say why the call to *address* failed (a ``grpc.RpcError``) and exit: 9 when the
    server does not allow it (no or wrong credentials), else 4 (no answer)."""
    import grpc

    code = exc.code()
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        click.echo(
            f"ceir: the ceir server at {address} does not allow this call "
            f"({code.name}: {exc.details()}); give --token, or --cert and --key, of a "
            "principal that may make it",
            err=True,
        )
        sys.exit(EXIT_FORBIDDEN)
    click.echo(
        f"ceir: no answer from the ceir server at {address} "
        f"({code.name}: {exc.details()}); is `ceir serve` running?",
        err=True,
    )
    sys.exit(EXIT_UNAVAILABLE)
