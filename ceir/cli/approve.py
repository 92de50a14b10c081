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
    changed = stage.changes - stage.new_devices if stage.changes > stage.new_devices else 0
    lines = [
        f"{stage.id:>5}  {_kind(stage):<12} {stage.file}  {stage.new_devices:,} new devices, "
        f"{changed:,} changed, {stage.rows:,} rows; staged by {stage.staged_by}; "
        f"expires {until} UTC",
        f"       digest   {stage.digest}",
    ]
    if stage.why:
        lines.append(f"       why      {stage.why}")
    if stage.options:
        shown = ", ".join(f"--{o.name} {o.value}" for o in stage.options)
        lines.append(f"       options  {shown}")
    if stage.sample:
        lines.append(f"       sample   (line) {','.join(stage.columns)}")
        lines += [f"         {row.line:>8}  {','.join(row.values)}" for row in stage.sample]
    lines.append(f"       approve  ceir approve {stage.id} --digest {stage.digest}")
    return "\n".join(lines)


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("stage_id", metavar="[ID]", type=click.IntRange(1), required=False)
@_server
@client_options
def stages(
    stage_id: int | None,
    address: str,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
) -> None:
    """List bulk imports waiting for a second principal's approval (only stage ID, if given).

    Each shows its digest, why it was staged, the rules it runs with (cutoff, quotas,
    --allow-unknown-tac, --max-bad-ratio, ...) and a sample of its rows, personal numbers
    as identity-token prefixes only. Approving needs that digest.
    """
    from ceir.v1 import approval_pb2

    answer = _call(
        address, auth_from(ca, cert, key, token), "ListStages", approval_pb2.ListStagesRequest()
    )
    shown = [s for s in answer.stages if stage_id is None or s.id == stage_id]
    for stage in shown:
        click.echo(_describe(stage))
    if stage_id is not None and not shown:
        click.echo(f"ceir: there is no stage {stage_id} waiting", err=True)
        sys.exit(EXIT_NO_STAGE)
    if not shown:
        click.echo("no stages waiting")


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("stage_id", metavar="ID", type=click.IntRange(1))
@click.option(
    "--digest",
    required=True,
    metavar="HEX",
    help="The stage's digest (SHA-256) as `ceir stages` showed it; another one is refused.",
)
@_server
@client_options
def approve(
    stage_id: int,
    digest: str,
    address: str,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
) -> None:
    """Approve staged import ID: it is applied now, recorded as approved by you.

    You need the ministry or admin role and must not be who staged it, and you name the
    digest `ceir stages` showed you: a stage with another digest is not applied. Exit 9
    when not allowed, 10 when the stage does not exist, has expired or has another digest.
    """
    from ceir.v1 import approval_pb2

    auth = auth_from(ca, cert, key, token)
    request = approval_pb2.StageRequest(id=stage_id, digest=digest)
    answer = _call(address, auth, "ApproveStage", request)
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


def _instant(value: str | None) -> int | None:
    if value is None:
        return None
    from ceir.errors import FeedRowError
    from ceir.feeds.rows import parse_instant

    try:
        return parse_instant(value, "--cutoff")
    except FeedRowError as exc:
        raise click.BadParameter(exc.message) from None


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.option(
    "--cutoff",
    metavar="TIME",
    default=None,
    help="Devices first seen after this (ISO 8601) are not grandfathered.",
)
@click.option(
    "--visitor-max-days", type=click.IntRange(1), default=None, help="Longest visitor stay."
)
@click.option(
    "--customs-quota",
    type=click.IntRange(1),
    default=None,
    help="Devices per identity per arrival.",
)
@click.option(
    "--customs-cooldown-days",
    type=click.IntRange(0),
    default=None,
    help="Days between two served arrivals of one identity.",
)
@click.option(
    "--late-grandfathering-days",
    type=click.IntRange(0),
    default=None,
    help="Days after the cutoff during which grandfathering needs no approval.",
)
@_server
@client_options
def eligibility(
    cutoff: str | None,
    visitor_max_days: int | None,
    customs_quota: int | None,
    customs_cooldown_days: int | None,
    late_grandfathering_days: int | None,
    address: str,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    token: str | None,
) -> None:
    """Show the store's eligibility rules; with options, change them (ministry or admin).

    The rules every import and single write applies: the grandfathering cutoff, the
    longest visitor registration, the customs quota and cooldown, and how long after the
    cutoff grandfathering needs no approval. An importer's flags may only tighten them.
    Each change is in the audit log.
    """
    from ceir.feeds.eligibility import instant
    from ceir.v1 import approval_pb2

    auth = auth_from(ca, cert, key, token)
    numbers = {
        "visitor_max_days": visitor_max_days,
        "customs_quota": customs_quota,
        "customs_cooldown_days": customs_cooldown_days,
        "late_grandfathering_days": late_grandfathering_days,
    }
    given = {name: value for name, value in numbers.items() if value is not None}
    seconds = _instant(cutoff)
    if given or seconds is not None:
        request = approval_pb2.SetEligibilityRequest()
        for name, value in given.items():
            setattr(request, name, value)
        if seconds is not None:
            request.cutoff.seconds = seconds
        rules = _call(address, auth, "SetEligibility", request)
    else:
        rules = _call(address, auth, "GetEligibility", approval_pb2.GetEligibilityRequest())
    click.echo(f"cutoff                    {instant(rules.cutoff.seconds)}")
    for name in numbers:
        click.echo(f"{name.replace('_', '-'):<26}{getattr(rules, name)}")
    if rules.set_by:
        click.echo(f"set by {rules.set_by} at {instant(rules.set_at.seconds)}")
    else:
        click.echo("the defaults: nobody has set them")
