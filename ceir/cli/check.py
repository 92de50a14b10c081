"""``ceir check``: the consumer's IMEI check against a running server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ceir.cli._client import auth_from, call_failed, client_options, quiet_grpc, server_option
from ceir.cli.app import CONTEXT, EPILOG, EXIT_INVALID_IMEI, EXIT_OK, EXIT_REFUSED, main
from ceir.errors import InvalidImeiError


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


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("imei")
@server_option("Address of a running ceir server.")
@click.option(
    "--json",
    "as_json",
    envvar="CEIR_JSON",
    is_flag=True,
    help="Print the answer as one JSON object.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds to wait (more than 0).",
)
@client_options
def check(
    imei: str,
    address: str,
    as_json: bool,
    timeout: float,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
) -> None:
    """Check an IMEI the way a buyer would: is this phone registered?

    IMEI may be written with spaces or dashes (35-209900-176148-1). Exits 0 when the
    device may connect, 1 when it will be refused, 9 when the server wants credentials.
    """
    quiet_grpc()
    import grpc

    from ceir.imei import parse_lenient
    from ceir.v1 import device_check_pb2, device_check_pb2_grpc

    try:
        parsed = parse_lenient(imei)
    except InvalidImeiError as exc:
        click.echo(f"ceir: {imei!r} is not a valid IMEI: {exc}", err=True)
        sys.exit(EXIT_INVALID_IMEI)
    auth = auth_from(ca, cert, key, token)
    with auth.channel(address) as channel:
        stub = device_check_pb2_grpc.DeviceCheckStub(channel)
        try:
            response = stub.LookupDevice(
                device_check_pb2.LookupDeviceRequest(imei=parsed.canonical),
                timeout=timeout,
                metadata=auth.metadata,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                click.echo(f"ceir: {imei!r} is not a valid IMEI: {exc.details()}", err=True)
                sys.exit(EXIT_INVALID_IMEI)
            call_failed(exc, address, auth)
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
