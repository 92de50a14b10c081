"""``ceir replica``: a read replica at an operator's site; ``ceir replica status`` and
``ceir replica keygen``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.cli.serve import serve
from ceir.config import DEFAULT_DB, Settings
from ceir.errors import CeirError, ConfigError

# `ceir serve` flags a replica has no use for: it loads no demo data, takes no writes
# and does not publish.
_CENTRAL_ONLY = frozenset(
    {
        "demo",
        "stage_above",
        "write_rate",
        "write_burst",
        "publish",
        "signing_key",
        "changes_keep_days",
        "clone_conditions",
        "observation_keys",
    }
)
_DEFAULTS = Settings()
_REPLICA_FLAGS = (
    "nats",
    "source",
    "verify_key",
    "source_token",
    "source_ca",
    "source_cert",
    "source_key",
    "operator",
)


def _check_operator(value: str | None) -> str | None:
    if value is None:
        return None
    from ceir.security.principals import check_operator_id

    return check_operator_id(value)


def _run(ctx: click.Context, /, **flags: Any) -> None:
    if ctx.invoked_subcommand is not None:
        return
    own = {name: flags.pop(name) for name in _REPLICA_FLAGS}
    missing = [f"--{n.replace('_', '-')}" for n in ("nats", "source", "verify_key") if not own[n]]
    if missing:
        raise click.UsageError(f"a replica needs {', '.join(missing)}")
    try:
        own["operator"] = _check_operator(own["operator"])
    except CeirError as exc:
        fail(exc)
    # The central-only settings keep their defaults (a replica does not use them).
    defaults = {name: getattr(_DEFAULTS, name) for name in _CENTRAL_ONLY}
    assert serve.callback is not None
    serve.callback(**flags, **{**defaults, "demo": False}, **own)


_OPTIONS = [
    click.Option(
        ["--nats"], metavar="nats://HOST:PORT", help="The broker to follow (stream CEIR_CHANGES)."
    ),
    click.Option(
        ["--source"], metavar="HOST:PORT", help="The central register (gRPC) to bootstrap from."
    ),
    click.Option(
        ["--verify-key"],
        type=click.Path(path_type=Path, dir_okay=False),
        help="The central's public key (verify.pem from `ceir replica keygen`).",
    ),
    click.Option(
        ["--source-token"], help="Bearer token (role replica) when the central requires one."
    ),
    click.Option(
        ["--source-ca"],
        type=click.Path(path_type=Path, dir_okay=False),
        help="CA certificate of the central's TLS certificate: bootstrap over TLS.",
    ),
    click.Option(
        ["--source-cert"],
        type=click.Path(path_type=Path, dir_okay=False),
        help="Client certificate (role replica, e.g. replica.pem from `ceir certs`) to "
        "present to the central (mutual TLS; with --source-ca and --source-key).",
    ),
    click.Option(
        ["--source-key"],
        type=click.Path(path_type=Path, dir_okay=False),
        help="The key of --source-cert.",
    ),
    click.Option(["--operator"], metavar="MCC-MNC", help="The operator this replica serves."),
]

replica = click.Group(
    "replica",
    params=[p for p in serve.params if p.name not in _CENTRAL_ONLY] + _OPTIONS,
    callback=click.pass_context(_run),
    invoke_without_command=True,
    context_settings=CONTEXT,
    epilog=EPILOG,
    help="Serve a read replica of the central register at an operator's site: bootstrap "
    "from the central's signed snapshot, follow its changes over NATS JetStream, and "
    "answer CheckIMEI and DeviceCheck from the local store (no Registry, no Approvals). "
    "Takes the serving flags of `ceir serve`.",
)
main.add_command(replica)


@replica.command(epilog=EPILOG, context_settings=CONTEXT)
@click.option(
    "--db",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DB,
    help="The replica's store directory.",
)
@click.option("--json", "as_json", is_flag=True, envvar="CEIR_JSON", help="Print one JSON object.")
def status(db: Path, as_json: bool) -> None:
    """Where a replica stands: applied sequence, head sequence heard of, lag in seconds."""
    from ceir.store import open_store
    from ceir.store import replica as position

    try:
        with open_store(db, readonly=True) as store:
            state = position.state(store)
    except CeirError as exc:
        fail(exc)
    if state is None:
        fail(ConfigError(f"{db} has not been bootstrapped as a replica"))
    lag = state.lag_seconds(int(time.time() * 1000))
    head = max(state.head, state.applied)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "applied_sequence": state.applied,
                    "head_sequence": head,
                    "lag_seconds": round(lag, 3),
                    "devices": state.devices,
                    "refused": state.refused,
                    "bootstraps": state.bootstraps,
                },
                sort_keys=True,
            )
        )
        return
    click.echo(f"applied sequence  {state.applied:,}")
    click.echo(f"head sequence     {head:,}")
    click.echo(f"lag               {lag:.3f} s")
    click.echo(f"devices           {state.devices:,}")
    click.echo(f"refused messages  {state.refused:,}")
    click.echo(f"bootstraps        {state.bootstraps:,}")


@replica.command(epilog=EPILOG, context_settings=CONTEXT)
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def keygen(directory: Path) -> None:
    """Write a new Ed25519 key pair: DIRECTORY/signing.pem stays on the central site
    (ceir serve --signing-key), DIRECTORY/verify.pem goes to every replica (--verify-key)."""
    from ceir.replication.keys import generate

    try:
        private, public = generate(directory)
    except CeirError as exc:
        fail(exc)
    click.echo(f"wrote {private} (keep it on the central site) and {public} (for replicas)")
