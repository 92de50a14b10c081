"""``ceir serve``: the gRPC server on the embedded store."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ceir.cli import CONTEXT, EPILOG, fail, main
from ceir.config import DEFAULT_DB, DEFAULT_PORT, Settings, UnknownStatus
from ceir.errors import CeirError


@main.command(epilog=EPILOG, context_settings=CONTEXT)
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
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Server processes sharing the port (0: one per core).",
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
    workers: int,
    log_level: str,
) -> None:
    """Serve CheckIMEI, DeviceCheck, health and reflection over gRPC."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from ceir.workers import serve as run

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
            workers=workers,
        )
        run(settings)
    except CeirError as exc:
        fail(exc)
