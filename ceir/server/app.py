"""The gRPC server: error -> status table, ``create_server()``, ``serve()``.

Domain errors are translated into gRPC status codes by this module's table and nowhere
else; the access gate (:mod:`ceir.server.access`) applies it to every call it passes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from ceir import metrics, version_text
from ceir.clones.site import CloneSite, clone_site
from ceir.config import Settings, field_default
from ceir.errors import (
    CeirError,
    ConfigError,
    DailyLimitError,
    FeedError,
    FeedRefusedError,
    FeedRowError,
    ForbiddenError,
    InvalidImeiError,
    InvalidRequestError,
    LimitError,
    NotFoundError,
    ReplicationError,
    RuleError,
    StageExpiredError,
    StageMismatchError,
    StoreError,
    StoreSchemaError,
)
from ceir.lookup import Checker
from ceir.policy import Policy
from ceir.replication.keys import load_signing_key
from ceir.replication.service import replication_services
from ceir.server import access, transport
from ceir.server.approvals import Approvals
from ceir.server.connections import GrpcSweeper
from ceir.server.device_check import DeviceCheck
from ceir.server.eir import EquipmentIdentityRegister, add_eir_to_server
from ceir.server.faces import Face
from ceir.server.registry import Registry
from ceir.server.reload import Reloader
from ceir.server.replication import Replication
from ceir.sightings import ignore
from ceir.store import Store, demo, open_store
from ceir.store.replica import state as replica_state
from ceir.v1 import (
    approval_pb2,
    approval_pb2_grpc,
    device_check_pb2,
    device_check_pb2_grpc,
    eir_pb2,
    registry_pb2,
    registry_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)

log = logging.getLogger("ceir.server.app")

# The one place where errors become gRPC status codes. Most specific class first.
STATUS_FOR_ERROR: tuple[tuple[type[CeirError], grpc.StatusCode], ...] = (
    (InvalidImeiError, grpc.StatusCode.INVALID_ARGUMENT),
    (DailyLimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LimitError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (ForbiddenError, grpc.StatusCode.PERMISSION_DENIED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (StageExpiredError, grpc.StatusCode.FAILED_PRECONDITION),
    (StageMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (FeedRowError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (FeedRefusedError, grpc.StatusCode.FAILED_PRECONDITION),
    (FeedError, grpc.StatusCode.INVALID_ARGUMENT),
    (RuleError, grpc.StatusCode.FAILED_PRECONDITION),
    (ReplicationError, grpc.StatusCode.FAILED_PRECONDITION),
    (StoreSchemaError, grpc.StatusCode.FAILED_PRECONDITION),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
    (CeirError, grpc.StatusCode.INTERNAL),
)

REPLICA_SERVICE_NAMES = (
    eir_pb2.DESCRIPTOR.services_by_name["EquipmentIdentityRegister"].full_name,
    device_check_pb2.DESCRIPTOR.services_by_name["DeviceCheck"].full_name,
    replication_pb2.DESCRIPTOR.services_by_name["Replication"].full_name,
)
"""What a read replica serves: lookups, never Registry or Approvals."""
SERVICE_NAMES = (
    *REPLICA_SERVICE_NAMES,
    approval_pb2.DESCRIPTOR.services_by_name["Approvals"].full_name,
    registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
)


def status_for(exc: CeirError) -> grpc.StatusCode:
    """The gRPC status code for a domain error."""
    for cls, code in STATUS_FOR_ERROR:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL  # pragma: no cover - CeirError is in the table


@dataclass
class CeirServer:
    """A created (not yet started) server and its health service."""

    grpc_server: Any
    health: HealthServicer
    store: Store
    security: str = transport.OPEN_DEFAULT
    faces: list[Face] = field(default_factory=list)
    """The other doors (S13, the web page, ...) and, in one process of a site, the
    replication relay or follower; started after and stopped with the gRPC server."""
    names: tuple[str, ...] = SERVICE_NAMES
    """The services health reports on."""
    replica: bool = False
    """A read replica: NOT_SERVING until its store has been bootstrapped."""
    _watch: asyncio.Task[None] | None = None
    reloader: Reloader = field(default_factory=Reloader)
    """What SIGHUP re-reads (the bearer-token file, the TLS files): :mod:`ceir.server.reload`."""
    watch_interval: float = field_default(Settings, "watch_interval")
    """Seconds between two looks at the reloader's watched files; 0: SIGHUP only."""
    _watcher: asyncio.Task[None] | None = None
    sweeper: GrpcSweeper | None = None
    """Closes gRPC connections past the per-address cap (:mod:`ceir.server.connections`)."""
    _sweeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.grpc_server.start()
        started: list[Face] = []
        try:
            for face in self.faces:
                await face.start()
                started.append(face)
        except BaseException:
            await asyncio.gather(*(face.stop(0) for face in started))
            await self.grpc_server.stop(0)
            raise
        if self.sweeper is not None:
            self._sweeping = asyncio.create_task(self.sweeper.run())
        if self.watch_interval > 0 and self.reloader.watched:
            self._watcher = asyncio.create_task(self.reloader.watch(self.watch_interval))
        if self.replica and replica_state(self.store) is None:
            await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)
            self._watch = asyncio.create_task(self._serve_when_bootstrapped())
        else:
            await self._set(health_pb2.HealthCheckResponse.SERVING)

    async def _set(self, status: Any) -> None:
        for name in ("", *self.names):
            await self.health.set(name, status)

    async def _serve_when_bootstrapped(self) -> None:
        # Every worker watches the store: only one of them runs the follower.
        while replica_state(self.store) is None:
            await asyncio.sleep(0.1)
        await self._set(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING, let in-flight calls finish within *grace* s, then stop
        (the faces drain alongside, with the same grace)."""
        tasks = [t for t in (self._watch, self._watcher, self._sweeping) if t is not None]
        for task in tasks:
            task.cancel()
        await self.health.enter_graceful_shutdown()
        await asyncio.gather(self.grpc_server.stop(grace), *(f.stop(grace) for f in self.faces))
        await asyncio.gather(*tasks, return_exceptions=True)

    def describe(self) -> str:
        """The start-up line's part about the faces beside gRPC ('' when none)."""
        return "".join(f"; {face.describe()}" for face in self.faces)

    def wait(self) -> Awaitable[bool]:
        return self.grpc_server.wait_for_termination()  # type: ignore[no-any-return]


def create_server(
    settings: Settings,
    store: Store,
    *,
    background: bool = True,
    clock: Callable[[], float] = time.time,
    recorder: Path | None = None,
) -> tuple[CeirServer, int]:
    """Build the aio server on *store* and bind it; returns it and the bound port.

    Bind ``port=0`` to get a free port (tests do). With *background* (one process of a
    site), the server also runs the relay (``--publish``) or, on a replica, the follower.
    With *recorder* (the socket of the site's recorder process, ``ceir serve``) sightings
    are handed over to it; without, they are recorded in this process (tests).
    """
    if not settings.metrics:
        metrics.disable()
    # The gate translates domain errors too: one wrapper per call, not two.
    gate, security = access.from_settings(settings, errors=status_for)
    options = transport.server_options(
        settings.max_message_bytes,
        transport.TransportLimits(),
        # Worker processes share the port; a lone server must find it free.
        reuseport=settings.workers > 1,
    )
    server = grpc.aio.server(options=options, interceptors=[gate])
    policy = Policy(settings.unknown_status.status)
    # clock: simulated days (loadtest)
    clones = clone_site(settings, store, clock=clock, recorder_socket=recorder)
    eir = EquipmentIdentityRegister(
        Checker(store, policy, paired=clones.paired),
        settings.max_batch,
        observe=clones.observe,
        observe_batch=clones.observe_batch,
    )
    add_eir_to_server(eir, server)
    check = DeviceCheck(store, policy)
    device_check_pb2_grpc.add_DeviceCheckServicer_to_server(check, server)
    if not settings.replica:
        approval_pb2_grpc.add_ApprovalsServicer_to_server(Approvals(store), server)
        registry_pb2_grpc.add_RegistryServicer_to_server(
            Registry(
                store,
                policy,
                actor=access.actor,
                allow=access.allow_kind,
                stage_above=settings.stage_above,
                stage_lost_stolen_above=settings.stage_lost_stolen_above,
                channel_daily_above=settings.channel_daily_above,
                channel_daily_lost_stolen_above=settings.channel_daily_lost_stolen_above,
            ),
            server,
        )
    signing = None if settings.signing_key is None else load_signing_key(settings.signing_key)
    replication_pb2_grpc.add_ReplicationServicer_to_server(
        Replication(store, signing, is_replica=settings.replica), server
    )
    names = REPLICA_SERVICE_NAMES if settings.replica else SERVICE_NAMES
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    reloader = Reloader()
    tls = transport.ReloadableCredentials(security) if security.tls else None
    if tls is not None:
        reloader.add("TLS files", tls.reload)
    trust = gate.trust
    if settings.tokens is not None:
        reloader.add("bearer tokens", trust.reload_tokens, watch=settings.tokens)
    if settings.cert_deny is not None:
        reloader.add("certificate deny-list", trust.reload_denied, watch=settings.cert_deny)
    port = security.bind(
        server,
        settings.host,
        settings.port,
        authenticated=gate.secure,
        credentials=None if tls is None else tls.credentials(),
    )
    if port == 0 and settings.port != 0:  # pragma: no cover - grpc raises on most systems
        raise ConfigError(f"cannot listen on {settings.address}")
    described = security.describe(
        tokens=None if gate.tokens is None else len(gate.tokens),
        denied=None if settings.cert_deny is None else len(trust.denied),
    )
    faces = create_faces(settings, store, policy, gate, security, clones)
    faces += clones.faces  # the recorder's thread (every process), upstream tasks
    if background:
        faces += replication_services(settings, store) + nrf_agents(settings, faces)
    made = CeirServer(
        server,
        health,
        store,
        described,
        faces,
        names,
        settings.replica,
        reloader=reloader,
        watch_interval=settings.watch_interval,
        sweeper=_sweeper(settings, port),
    )
    return made, port


def _sweeper(settings: Settings, port: int) -> GrpcSweeper | None:
    """The per-address cap of the gRPC port, where the kernel's table can be read."""
    limit = settings.max_connections_per_address
    if limit <= 0:
        return None
    if not GrpcSweeper.available():  # pragma: no cover - Linux has /proc/net/tcp
        log.warning("no /proc/net/tcp: the gRPC port has no per-address connection cap")
        return None
    return GrpcSweeper(port, limit)


def create_faces(
    settings: Settings,
    store: Store,
    policy: Policy,
    gate: access.AccessInterceptor,
    security: transport.Security,
    clones: CloneSite | None = None,
) -> list[Face]:
    """The configured faces beside gRPC, created (not yet bound) on *store* and *policy*;
    the web face shares the gRPC gate's principals and DeviceCheck rate limit; the network
    faces report sightings to *clones*' recorder and answer by its pairs."""
    faces: list[Face] = []
    clones = clones or CloneSite()
    observe = clones.observe or ignore
    if settings.s13_address is not None:
        from ceir.network.s13 import S13Face, S13Options

        options = S13Options.from_settings(settings)
        assert options is not None
        checker = Checker(store, policy, paired=clones.paired)
        faces.append(S13Face(options, checker, store, observer=observe))
    web_address = settings.web_address
    if web_address is not None:
        from ceir.web.app import WebFace, WebSettings, ssl_context

        host, port = web_address
        security.check(host, authenticated=gate.secure)
        faces.append(
            WebFace(
                WebSettings(
                    host,
                    port,
                    reuse_port=settings.workers > 1,
                    grace=settings.grace,
                    per_address=settings.max_connections_per_address,
                ),
                store,
                policy,
                limiter=gate.limiter,
                trust=gate.trust,
                certificates=security.mutual,
                ssl_context=ssl_context(security) if security.tls else None,
            )
        )
    if settings.sbi_address is not None:
        from ceir.network import n5g_eir

        n5g = n5g_eir.create_face(
            settings, store, observe=observe, trust=gate.trust, paired=clones.paired
        )
        assert n5g is not None
        faces.append(n5g)
    return faces


def nrf_agents(settings: Settings, faces: list[Face]) -> list[Face]:
    """The NRF registration of the N5g-eir face among *faces* (``--nrf``), for the one
    process of the site that does such things; started after the face: it knows its port."""
    if settings.nrf is None:
        return []
    from ceir.network.n5g_eir import N5gEirFace
    from ceir.network.nrf import NrfAgent

    return [NrfAgent(settings.nrf, f) for f in faces if isinstance(f, N5gEirFace)]


def prepare_store(settings: Settings) -> Store:
    """Open the configured store; load demo data into it if it is empty and demo is on.
    A replica's store commits without fsync (:func:`ceir.store.open_store`, ``durable``)."""
    store = open_store(settings.db, durable=not settings.replica)
    if settings.demo:
        demo.load_if_empty(store, secured=settings.secured)
    return store


async def _serve(settings: Settings, store: Store, recorder: Path | None) -> None:
    server, port = create_server(settings, store, recorder=recorder)
    # Handlers first: a SIGTERM right after the start-up line must drain, not kill.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server.reloader.install(loop)
    await server.start()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info(
        "ceir %s serving on %s:%d; store %s (%d devices, %d TACs); unknown IMEIs are %s; %s%s",
        version_text(),
        host,
        port,
        settings.db,
        store.device_count(),
        store.tac_count(),
        settings.unknown_status.value,
        server.security,
        server.describe(),
    )
    await stop.wait()
    started = time.monotonic()
    log.info("stopping: draining in-flight calls for up to %.1f s", settings.grace)
    await server.stop(settings.grace)
    log.info("stopped after %.2f s", time.monotonic() - started)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.new_event_loop
    return None


def serve(settings: Settings, *, recorder: Path | None = None) -> None:
    """Open the store and serve until SIGTERM or SIGINT, then drain and return; hand
    sightings to the recorder process at *recorder* when given.

    SIGHUP reloads the bearer-token file and the TLS files (:mod:`ceir.server.reload`)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the reload handler is in
    store = prepare_store(settings)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(settings, store, recorder))
    finally:
        store.close()
