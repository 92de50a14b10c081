"""``ceir stages``, ``ceir approve``, ``ceir reject``: the second person of the two-person rule.

They talk to a running server as an authenticated principal (a ministry or admin token
or certificate), so the approval is attributed to that principal, never to whoever can
read the store's files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ceir.cli._client import auth_from, call_failed, client_options, quiet_grpc, server_option
from ceir.cli.app import CONTEXT, EPILOG, EXIT_NO_STAGE, main
from ceir.feeds import Kind  # enums only

F = TypeVar("F", bound=Callable[..., Any])


def _server(fn: F) -> F:
    return server_option()(fn)


def _call(address: str, auth: Any, method: str, request: Any) -> Any:
    quiet_grpc()
    import grpc

    from ceir.v1 import approval_pb2_grpc

    with auth.channel(address) as channel:
        stub = approval_pb2_grpc.ApprovalsStub(channel)
        try:
            return getattr(stub, method)(request, metadata=auth.metadata, timeout=600)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                click.echo(f"ceir: {exc.details()}", err=True)
                sys.exit(EXIT_NO_STAGE)
            call_failed(exc, address, auth)


def _kind(stage: Any) -> str:
    """The feed kind of a proto Stage, as ``ceir import`` names it (``operator-dump``)."""
    from ceir.v1 import registry_pb2

    name = registry_pb2.FeedKind.Name(stage.kind).removeprefix("FEED_KIND_")
    return Kind[name].value if name in Kind.__members__ else "unknown"


def _describe(stage: Any) -> str:
    until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(stage.expires_at.seconds))
    return (
        f"{stage.id:>5}  {_kind(stage):<12} {stage.file}  {stage.new_devices:,} new devices, "
        f"{stage.rows:,} rows; staged by {stage.staged_by}; expires {until} UTC"
    )


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@_server
@client_options
def stages(
    address: str, ca: Path | None, cert: Path | None, key: Path | None, token: str | None
) -> None:
    """List bulk imports waiting for a second principal's approval."""
    from ceir.v1 import approval_pb2

    answer = _call(
        address, auth_from(ca, cert, key, token), "ListStages", approval_pb2.ListStagesRequest()
    )
    for stage in answer.stages:
        click.echo(_describe(stage))
    if not answer.stages:
        click.echo("no stages waiting")


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("stage_id", metavar="ID", type=click.IntRange(1))
@_server
@client_options
def approve(
    stage_id: int,
    address: str,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
) -> None:
    """Approve staged import ID: it is applied now, recorded as approved by you.

    You need the ministry or admin role and must not be who staged it. Exit 9 when not
    allowed, 10 when the stage does not exist or has expired.
    """
    from ceir.v1 import approval_pb2

    auth = auth_from(ca, cert, key, token)
    answer = _call(address, auth, "ApproveStage", approval_pb2.StageRequest(id=stage_id))
    click.echo(
        f"approved stage {stage_id} ({_kind(answer.stage)} {answer.stage.file}, staged by "
        f"{answer.stage.staged_by}): import #{answer.import_id}, {answer.added:,} new, "
        f"{answer.changed:,} changed, {answer.rejected:,} rejected"
    )


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("stage_id", metavar="ID", type=click.IntRange(1))
@_server
@client_options
def reject(
    stage_id: int,
    address: str,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
) -> None:
    """Reject staged import ID: it is dropped and nothing of it reaches the register."""
    from ceir.v1 import approval_pb2

    auth = auth_from(ca, cert, key, token)
    answer = _call(address, auth, "RejectStage", approval_pb2.StageRequest(id=stage_id))
    click.echo(f"rejected stage {stage_id} ({_kind(answer.stage)} {answer.stage.file})")
