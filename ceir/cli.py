"""The ``ceir`` command: thin. Parse flags, call the library, print, exit.

Exit codes (also in ``ceir --help``):

==  =====================================================================
0   success; for ``ceir check``: the device may connect
1   ``ceir check``: the device will be refused (not registered, blocked, expired)
2   usage error (bad flag or argument)
3   invalid IMEI
4   the server could not be reached or failed
5   the store cannot be opened or has an unknown layout
6   bad configuration (e.g. the address cannot be bound)
==  =====================================================================
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ceir import __version__
from ceir.config import DEFAULT_DB, DEFAULT_PORT, Settings, UnknownStatus
from ceir.errors import CeirError, ConfigError, InvalidImeiError, StoreError

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INVALID_IMEI = 3
EXIT_UNAVAILABLE = 4
EXIT_STORE = 5
EXIT_CONFIG = 6

# The one place where errors become exit codes. Most specific class first.
EXIT_FOR_ERROR: tuple[tuple[type[CeirError], int], ...] = (
    (InvalidImeiError, EXIT_INVALID_IMEI),
    (StoreError, EXIT_STORE),
    (ConfigError, EXIT_CONFIG),
    (CeirError, EXIT_CONFIG),
)

EPILOG = """\b
Exit codes: 0 ok (check: may connect), 1 check: refused, 2 usage,
3 invalid IMEI, 4 server unreachable, 5 store error, 6 bad configuration.
Every flag can also be set as CEIR_<FLAG>, e.g. CEIR_DB, CEIR_PORT."""


def fail(exc: CeirError) -> NoReturn:
    """Print what is wrong and exit with the error's code."""
    for cls, code in EXIT_FOR_ERROR:
        if isinstance(exc, cls):
            click.echo(f"ceir: {exc}", err=True)
            sys.exit(code)
    raise exc  # pragma: no cover - CeirError is in the table


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="ceir")
def main() -> None:
    """ceir: the national IMEI register and the CheckIMEI service operators' EIRs call."""


@main.command(epilog=EPILOG)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    help="Store directory (LMDB); created on first run.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=int,
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--unknown-status",
    type=click.Choice([u.value for u in UnknownStatus]),
    default=UnknownStatus.BLACKLISTED.value,
    show_default=True,
    help="Answer for IMEIs not in the register: the regime.",
)
@click.option(
    "--demo/--no-demo", default=True, show_default=True, help="Load demo data into an empty store."
)
@click.option(
    "--max-batch",
    type=int,
    default=10_000,
    show_default=True,
    help="Most IMEIs in one batch or stream message.",
)
@click.option(
    "--max-message-bytes",
    type=int,
    default=4 * 1024 * 1024,
    show_default=True,
    help="Largest request or response message.",
)
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds in-flight calls get to finish on SIGTERM/SIGINT.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    db: Path,
    host: str,
    port: int,
    unknown_status: str,
    demo: bool,
    max_batch: int,
    max_message_bytes: int,
    grace: float,
    log_level: str,
) -> None:
    """Serve CheckIMEI, DeviceCheck, health and reflection over gRPC."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from ceir.server import serve as run

    try:
        settings = Settings(
            db=db,
            host=host,
            port=port,
            unknown_status=UnknownStatus(unknown_status),
            demo=demo,
            max_batch=max_batch,
            max_message_bytes=max_message_bytes,
            grace=grace,
        )
        run(settings)
    except CeirError as exc:
        fail(exc)


def _check_result(response: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    from ceir.v1 import device_check_pb2

    result: dict[str, Any] = MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    result["state"] = device_check_pb2.DeviceState.Name(response.state).removeprefix(
        "DEVICE_STATE_"
    )
    if not response.HasField("valid_until"):
        result.pop("valid_until", None)
    return result


@main.command(epilog=EPILOG)
@click.argument("imei")
@click.option(
    "--server",
    "address",
    default=f"127.0.0.1:{DEFAULT_PORT}",
    show_default=True,
    help="Address of a running ceir server.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as one JSON object.")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait.")
def check(imei: str, address: str, as_json: bool, timeout: float) -> None:
    """Check an IMEI the way a buyer would: is this phone registered?

    IMEI may be written with spaces or dashes (35-209900-176148-1). Exits 0 when the
    device may connect, 1 when it will be refused.
    """
    import grpc

    from ceir.imei import parse_lenient
    from ceir.v1 import device_check_pb2, device_check_pb2_grpc

    try:
        parsed = parse_lenient(imei)
    except InvalidImeiError as exc:
        click.echo(f"ceir: {imei!r} is not a valid IMEI: {exc}", err=True)
        sys.exit(EXIT_INVALID_IMEI)
    with grpc.insecure_channel(address) as channel:
        stub = device_check_pb2_grpc.DeviceCheckStub(channel)
        try:
            response = stub.LookupDevice(
                device_check_pb2.LookupDeviceRequest(imei=parsed.canonical), timeout=timeout
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                click.echo(f"ceir: {imei!r} is not a valid IMEI: {exc.details()}", err=True)
                sys.exit(EXIT_INVALID_IMEI)
            click.echo(
                f"ceir: no answer from the ceir server at {address} "
                f"({exc.code().name}: {exc.details()}); is `ceir serve` running?",
                err=True,
            )
            sys.exit(EXIT_UNAVAILABLE)
    if as_json:
        click.echo(json.dumps(_check_result(response), sort_keys=True))
    else:
        click.echo(f"IMEI     {response.imei} ({parsed.formatted()})")
        click.echo(f"Status   {response.summary}")
        if response.brand or response.model:
            kind = f" ({response.device_type})" if response.device_type else ""
            click.echo(f"Device   {response.brand} {response.model}{kind}")
        else:
            click.echo(f"Device   unknown (TAC {response.tac} is not in the TAC database)")
    sys.exit(EXIT_OK if response.allowed else EXIT_REFUSED)


def run() -> None:
    """Entry point of the ``ceir`` script: flags may also come from CEIR_* variables."""
    main(auto_envvar_prefix="CEIR")


if __name__ == "__main__":  # pragma: no cover
    run()
