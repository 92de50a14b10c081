"""Flags and channel for commands that call a running server: TLS, client certificate, token."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ceir.cli.app import EXIT_FORBIDDEN, EXIT_UNAVAILABLE
from ceir.config import DEFAULT_PORT

F = TypeVar("F", bound=Callable[..., Any])


class ServerAddress(click.ParamType):  # type: ignore[type-arg]  # generic in click >= 8.3 only
    """``HOST[:PORT]`` of a ceir server; PORT defaults to 50051 and must be 1..65535."""

    name = "HOST[:PORT]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text.startswith("["):  # [IPv6]:PORT or [IPv6]
            host, _, rest = text[1:].partition("]")
            port_text = rest.removeprefix(":") if rest.startswith(":") else None
            if rest and port_text is None:
                self.fail(f"{text!r} is not HOST[:PORT]", param, ctx)
            host = f"[{host}]"
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        elif ":" in text:  # a bare IPv6 address
            host, port_text = f"[{text}]", None
        else:
            host, port_text = text, None
        if not host or host == "[]":
            self.fail(f"{text!r} has no host", param, ctx)
        if port_text is None:
            return f"{host}:{DEFAULT_PORT}"
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            self.fail(f"port {port_text!r} of {text!r} is not a port number 1..65535", param, ctx)
        return f"{host}:{int(port_text)}"


def server_option(text: str = "Address of the running ceir server.") -> Callable[[F], F]:
    """``--server HOST[:PORT]`` (CEIR_SERVER), default 127.0.0.1:50051."""
    return click.option(
        "--server",
        "address",
        envvar="CEIR_SERVER",  # named after the flag, not the parameter
        type=ServerAddress(),
        default=f"127.0.0.1:{DEFAULT_PORT}",
        show_default=True,
        help=f"{text} PORT defaults to {DEFAULT_PORT}.",
    )


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


def quiet_grpc() -> None:
    """Keep gRPC's C core to errors on stderr (its INFO lines, such as one per failed TLS
    handshake, would come before ceir's one line). Call before grpc is imported."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


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
    """The ClientAuth for the flags :func:`client_options` added (usage error if they do
    not fit together: --cert and --key go in pairs, and with --ca)."""
    if (cert is None) != (key is None):
        given, missing = ("--cert", "--key") if key is None else ("--key", "--cert")
        raise click.UsageError(
            f"{given} needs {missing}: a client certificate and its key go together"
        )
    if cert is not None and ca is None:
        raise click.UsageError(
            "--cert and --key need --ca (the server's CA): a client certificate is mutual TLS"
        )
    return ClientAuth(ca, cert, key, token or None)


def _listening(address: str) -> bool:
    """Whether something accepts TCP connections at *address* (HOST:PORT)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def _retry_after(exc: Any) -> str | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            return str(value)
    return None


def call_failed(exc: Any, address: str, auth: ClientAuth | None = None) -> NoReturn:
    """Say why the call to *address* failed (a ``grpc.RpcError``) and exit: 9 when the
    server does not allow it (no or wrong credentials, clear text against TLS), else 4 (no
    answer, or a rate limit: then with the time to wait)."""
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
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and (wait := _retry_after(exc)) is not None:
        click.echo(
            f"ceir: the ceir server at {address} is rate-limiting calls from here "
            f"({code.name}: {exc.details()}); retry after {wait} s",
            err=True,
        )
        sys.exit(EXIT_UNAVAILABLE)
    unconnected = "failed to connect to all addresses" in (exc.details() or "")
    if code == grpc.StatusCode.UNAVAILABLE and unconnected and _listening(address):
        # The port answers, the call does not: the transport security does not fit.
        if auth is None or auth.ca is None:
            hint = "it probably speaks TLS: give --ca (the server's CA), and --cert and --key "
            hint += "if it wants client certificates"
        elif auth.cert is None:
            hint = "it probably wants a client certificate (mutual TLS): give --cert and --key"
        else:
            hint = "check that --ca is the server's CA and that --cert/--key are a client "
            hint += "certificate from the CA the server trusts"
        click.echo(
            f"ceir: the ceir server at {address} refused the connection's credentials "
            f"({code.name}: {exc.details()}); {hint}",
            err=True,
        )
        sys.exit(EXIT_FORBIDDEN)
    click.echo(
        f"ceir: no answer from the ceir server at {address} "
        f"({code.name}: {exc.details()}); is `ceir serve` running?",
        err=True,
    )
    sys.exit(EXIT_UNAVAILABLE)
