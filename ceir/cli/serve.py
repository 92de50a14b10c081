"""``ceir serve``: the gRPC server on the embedded store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ceir import logs
from ceir.cli.app import CONTEXT, EPILOG, fail, main
from ceir.config import (
    DEFAULT_CHANGES_KEEP_DAYS,
    DEFAULT_DB,
    DEFAULT_DIAMETER_HOST,
    DEFAULT_DIAMETER_REALM,
    DEFAULT_LOG_FORMAT,
    DEFAULT_PORT,
    DEFAULT_S13,
    DEFAULT_SBI,
    DEFAULT_STAGE_LOST_STOLEN_ABOVE,
    DEFAULT_TOKENS,
    DEFAULT_WEB,
    Settings,
    UnknownAnswer,
    UnknownStatus,
    field_default,
)
from ceir.errors import CeirError, ConfigError
from ceir.logs import LogFormat


def _tokens_file(given: Path | None) -> Path | None:
    """The token file to use: the one given (it must exist), else the default if present."""
    if given is None:
        return DEFAULT_TOKENS if DEFAULT_TOKENS.exists() else None
    if not given.exists():
        raise ConfigError(f"token file {given} does not exist; create it with `ceir token add`")
    return given


@main.command(epilog=EPILOG, context_settings=CONTEXT)
@click.option(
    "--db",
    type=click.Path(path_type=Path),
    default=DEFAULT_DB,
    show_default=True,
    help="Store directory (LMDB); created on first run.",
)
@click.option(
    "--host",
    default=field_default(Settings, "host"),
    show_default=True,
    help="Address to listen on.",
)
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
    default=field_default(Settings, "unknown_status").value,
    show_default=True,
    help="Answer for IMEIs not in the register: the regime.",
)
@click.option(
    "--demo/--no-demo",
    default=field_default(Settings, "demo"),
    show_default=True,
    help="Load demo data into an empty store (never with --tokens or TLS: such a store "
    "starts empty).",
)
@click.option(
    "--max-batch",
    type=int,
    default=field_default(Settings, "max_batch"),
    show_default=True,
    help="Most IMEIs in one batch or stream message.",
)
@click.option(
    "--max-message-bytes",
    type=int,
    default=field_default(Settings, "max_message_bytes"),
    show_default=True,
    help="Largest request or response message.",
)
@click.option(
    "--grace",
    type=float,
    default=field_default(Settings, "grace"),
    show_default=True,
    help="Seconds in-flight calls get to finish on SIGTERM/SIGINT.",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Server certificate (PEM); with --tls-key the server speaks TLS.",
)
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False), help="Server key.")
@click.option(
    "--client-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CA of client certificates: mutual TLS, the certificate names the principal.",
)
@click.option(
    "--cert-deny",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Deny-list of revoked client certificates (sha256:/serial: lines, from `ceir certs "
    "revoke`); needs --client-ca. Watched: a change applies within seconds.",
)
@click.option(
    "--max-connections-per-address",
    type=click.IntRange(min=0),
    default=field_default(Settings, "max_connections_per_address"),
    show_default=True,
    help="Concurrent connections one client address may hold on each port (gRPC, N5g-eir, "
    "S13, web), per worker; the excess is closed; 0: no cap.",
)
@click.option(
    "--watch-interval",
    type=click.FloatRange(min=0),
    default=field_default(Settings, "watch_interval"),
    show_default=True,
    help="Seconds between looks at the token file and --cert-deny (revocation is live in "
    "every worker); 0: reload on SIGHUP only.",
)
@click.option(
    "--tokens",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Bearer-token file from `ceir token add` [default: {DEFAULT_TOKENS} if it exists].",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback address without TLS or authentication (logs a warning).",
)
@click.option(
    "--consumer-rate",
    type=float,
    default=field_default(Settings, "consumer_rate"),
    help="DeviceCheck calls per second per client; 0: unlimited.",
)
@click.option(
    "--consumer-burst",
    type=int,
    default=field_default(Settings, "consumer_burst"),
    help="DeviceCheck burst per client.",
)
@click.option(
    "--write-rate",
    type=float,
    default=field_default(Settings, "write_rate"),
    help="Single writes (Register, lost/stolen) per second per principal; 0: unlimited.",
)
@click.option(
    "--write-burst",
    type=int,
    default=field_default(Settings, "write_burst"),
    help="Single-write burst per principal.",
)
@click.option(
    "--stage-above",
    type=click.IntRange(0),
    default=field_default(Settings, "stage_above"),
    help="Two-person rule: an ImportFeed changing more devices' answers (new devices, "
    "blocks, unblocks, upgrades) is staged until a second principal approves it; 0: never.",
)
@click.option(
    "--stage-lost-stolen-above",
    type=click.IntRange(0),
    default=DEFAULT_STAGE_LOST_STOLEN_ABOVE,
    help="The same for lost-stolen files (the smaller threshold applies); 0: --stage-above. "
    "Both also bound one principal over a rolling 24 hours, files and single writes together.",
)
@click.option(
    "--channel-daily-above",
    type=click.IntRange(0),
    default=field_default(Settings, "channel_daily_above"),
    help="Rolling 24 hours, every principal of one channel together: past it files are "
    "staged and single writes refused (RESOURCE_EXHAUSTED); 0: no channel limit.",
)
@click.option(
    "--channel-daily-lost-stolen-above",
    type=click.IntRange(0),
    default=field_default(Settings, "channel_daily_lost_stolen_above"),
    help="The same for the lost-stolen channel; 0: no channel limit.",
)
@click.option(
    "--max-stream-messages",
    type=int,
    default=field_default(Settings, "max_stream_messages"),
    help="Most messages in one stream.",
)
@click.option(
    "--stream-idle",
    type=float,
    default=field_default(Settings, "stream_idle"),
    help="Seconds a client stream may stay silent before it is ended.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=field_default(Settings, "workers"),
    show_default=True,
    help="Server processes sharing the port (0: one per core).",
)
@click.option(
    "--s13",
    default=DEFAULT_S13,
    show_default=True,
    help="HOST:PORT of the S13 Diameter face (ME-Identity-Check for MMEs), or 'off'.",
)
@click.option(
    "--diameter-host",
    default=DEFAULT_DIAMETER_HOST,
    show_default=True,
    help="This node's Diameter Origin-Host.",
)
@click.option(
    "--diameter-realm",
    default=DEFAULT_DIAMETER_REALM,
    show_default=True,
    help="This node's Diameter Origin-Realm.",
)
@click.option(
    "--s13-peers",
    default="",
    show_default=False,
    help="Origin-Hosts of the MMEs allowed to connect, comma-separated, each HOST or "
    "HOST=MCC-MNC (the operator its metrics count under; else its 3GPP Origin-Realm's); "
    "required when --s13 is not on loopback [default: any, on loopback only].",
)
@click.option(
    "--s13-unknown",
    type=click.Choice([u.value for u in UnknownAnswer]),
    default=UnknownAnswer.STATUS.value,
    show_default=True,
    help="S13 answer for a valid IMEI not in the register: 'status' (Equipment-Status from "
    "--unknown-status) or 'not-found' (Experimental-Result 5422).",
)
@click.option(
    "--web",
    default=DEFAULT_WEB,
    show_default=True,
    help="HOST:PORT of the consumer check page, /api/v1/devices/{imei}, /metrics and "
    "/version; 'off': none.",
)
@click.option(
    "--metrics/--no-metrics",
    default=field_default(Settings, "metrics"),
    show_default=True,
    help="Record metrics for /metrics (off only to measure what recording costs).",
)
@click.option(
    "--log-format",
    type=click.Choice([f.value for f in LogFormat]),
    default=DEFAULT_LOG_FORMAT.value,
    show_default=True,
    help="text lines, or JSON lines (time, level, event, request id, principal, method/face, "
    "status, duration).",
)
@click.option(
    "--publish",
    metavar="nats://HOST:PORT",
    help="Relay every committed change to this NATS JetStream broker (stream CEIR_CHANGES) "
    "for read replicas; needs --signing-key.",
)
@click.option(
    "--signing-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Ed25519 key that signs changes and snapshots (from `ceir replica keygen`).",
)
@click.option(
    "--changes-keep-days",
    type=click.FloatRange(0),
    default=DEFAULT_CHANGES_KEEP_DAYS,
    show_default=True,
    help="With --publish: days the change log (and the stream) keeps entries the stream has "
    "acknowledged; a replica further behind bootstraps again.",
)
@click.option("--nats-user", help="Broker user name (with --nats-password).")
@click.option("--nats-password", help="Broker password.")
@click.option(
    "--nats-creds",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Broker credentials file (instead of user and password).",
)
@click.option(
    "--sbi",
    default=DEFAULT_SBI,
    show_default=True,
    metavar="HOST:PORT|off",
    help="N5g-eir face for 5G AMFs: HTTP/2 (cleartext, prior knowledge; TLS with ALPN h2 "
    "when --tls-cert/--tls-key are given); 'off' disables it.",
)
@click.option(
    "--sbi-unknown",
    type=click.Choice([u.value for u in UnknownAnswer]),
    default=UnknownAnswer.STATUS.value,
    show_default=True,
    help="N5g-eir answer for a valid PEI not in the register: 'status' is 200 with the "
    "--unknown-status answer; 'not-found' the strict 404 ERROR_EQUIPMENT_UNKNOWN.",
)
@click.option(
    "--nrf",
    metavar="URL",
    help="NRF apiRoot (http:// or https://): register the N5g-eir face (NFProfile 5G_EIR), "
    "heart-beat, deregister on shutdown.",
)
@click.option(
    "--observe/--no-observe",
    default=field_default(Settings, "observe"),
    show_default=True,
    help="Record the SIMs devices attach with (tokens only) and detect clones, in a "
    "recorder process beside the workers (--no-observe: neither).",
)
@click.option(
    "--clone-conditions",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Central: TOML file of clone conditions (name, parameters, grace_days, action, "
    "reason) replacing the defaults (10 IMSIs in 120 days; two operators within 60 min).",
)
@click.option(
    "--observations-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Replica: Ed25519 key (`ceir replica keygen`) signing the per-device counts and "
    "tokens it sends the central (stream CEIR_OBSERVATIONS); needs --operator.",
)
@click.option(
    "--observation-keys",
    type=click.Path(path_type=Path, file_okay=False),
    help="Central: directory of operators' public keys <MCC-MNC>.pem; their upstream "
    "sightings on the --publish broker are ingested.",
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
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    cert_deny: Path | None,
    max_connections_per_address: int,
    watch_interval: float,
    tokens: Path | None,
    insecure: bool,
    consumer_rate: float,
    consumer_burst: int,
    write_rate: float,
    write_burst: int,
    stage_above: int,
    stage_lost_stolen_above: int,
    channel_daily_above: int,
    channel_daily_lost_stolen_above: int,
    max_stream_messages: int,
    stream_idle: float,
    workers: int,
    s13: str,
    diameter_host: str,
    diameter_realm: str,
    s13_peers: str,
    s13_unknown: str,
    web: str,
    metrics: bool,
    log_format: str,
    publish: str | None,
    signing_key: Path | None,
    changes_keep_days: float,
    nats_user: str | None,
    nats_password: str | None,
    nats_creds: Path | None,
    sbi: str,
    sbi_unknown: str,
    nrf: str | None,
    observe: bool,
    clone_conditions: Path | None,
    observations_key: Path | None,
    observation_keys: Path | None,
    log_level: str,
    **replica: Any,
) -> None:
    """Serve CheckIMEI, DeviceCheck, health and reflection over gRPC, S13 over Diameter,
    N5g-eir over HTTP/2, and the consumer check page over HTTP."""
    logs.configure(log_level, LogFormat(log_format))
    from ceir.server.supervisor import serve as run

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
            tls_cert=tls_cert,
            tls_key=tls_key,
            client_ca=client_ca,
            cert_deny=cert_deny,
            max_connections_per_address=max_connections_per_address,
            watch_interval=watch_interval,
            tokens=_tokens_file(tokens),
            insecure=insecure,
            consumer_rate=consumer_rate,
            consumer_burst=consumer_burst,
            write_rate=write_rate,
            write_burst=write_burst,
            stage_above=stage_above,
            stage_lost_stolen_above=stage_lost_stolen_above,
            channel_daily_above=channel_daily_above,
            channel_daily_lost_stolen_above=channel_daily_lost_stolen_above,
            max_stream_messages=max_stream_messages,
            stream_idle=stream_idle,
            workers=workers,
            s13=s13,
            diameter_host=diameter_host,
            diameter_realm=diameter_realm,
            s13_peers=tuple(p.strip() for p in s13_peers.split(",") if p.strip()),
            s13_unknown=UnknownAnswer(s13_unknown),
            web=web,
            metrics=metrics,
            log_format=LogFormat(log_format),
            publish=publish,
            signing_key=signing_key,
            changes_keep_days=changes_keep_days,
            nats_user=nats_user,
            nats_password=nats_password,
            nats_creds=nats_creds,
            **replica,  # `ceir replica` serves with these flags and its own
            sbi=sbi,
            sbi_unknown=UnknownAnswer(sbi_unknown),
            nrf=nrf,
            observe=observe,
            clone_conditions=clone_conditions,
            observations_key=observations_key,
            observation_keys=observation_keys,
        )
        run(settings)
    except CeirError as exc:
        fail(exc)
