"""``ceir serve --workers N``: N server processes sharing one port.

gRPC in Python is bound by one core per process, so the whole machine is used by
running one server process per core on the same port (``SO_REUSEPORT``: the kernel
spreads connections over them). The parent:

- prepares the store (creates it, loads demo data) and closes it again, without
  importing gRPC, so nothing of gRPC or LMDB crosses a fork;
- holds the port: with ``--port 0`` it picks a free one by binding (not listening) a
  socket with ``SO_REUSEPORT``, which also makes a port taken by another program fail
  early with a clear message;
- forks the workers; each opens its own LMDB environment and its own aio server (uvloop
  when installed) and reports ready through a pipe;
- logs one line when all are ready, restarts a worker that dies (giving up if they keep
  dying), and on SIGTERM/SIGINT forwards SIGTERM so every worker drains in-flight calls
  within the grace period, then exits.

With ``--observe`` (the default) the parent also forks the site's recorder process
(:mod:`ceir.clones.process`) before the workers, listening on ``recorder.sock`` in the
store's private directory (or a private temporary one when that path is too long for a
unix socket); the workers hand their sightings to it, it is restarted like a worker when
it dies, and it is stopped after them, so it writes what they handed over last.

Workers ask the kernel for SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), so a
killed parent leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ceir import version_text
from ceir.config import Settings
from ceir.errors import CeirError, ConfigError
from ceir.server.transport import check_settings
from ceir.store import demo, open_store

__all__ = ["default_workers", "serve"]

log = logging.getLogger("ceir.server.supervisor")

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1
_READY_TIMEOUT = 60.0
_MAX_RESTARTS = 5  # within _RESTART_WINDOW seconds, then give up
_RESTART_WINDOW = 30.0
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes with its NUL


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def serve(settings: Settings) -> None:
    """Serve with ``settings.workers`` processes (0: one per core) until SIGTERM/SIGINT."""
    count = settings.workers or default_workers()
    if count == 1:
        from ceir.server.app import serve as serve_here

        # Files and ports first: a bad one fails before the store is made or demo data loaded.
        check_settings(settings)
        _check_free(settings.host, settings.port, settings.address)
        faces = (
            (settings.s13_address, "--s13"),
            (settings.web_address, "--web"),
            (settings.sbi_address, "--sbi"),
        )
        for face, flag in faces:
            if face is not None:
                _check_free(*face, f"{flag} {_address(*face)}")
        if not settings.observe:
            gc.freeze()  # what is loaded now lives for good: keep it out of collections
            serve_here(dataclasses.replace(settings, workers=1))
            return
        _prepare_store(settings)  # before the recorder process opens it
        with _recorder_dir(settings) as path:
            assert path is not None  # settings.observe
            recorder = _Recorder(settings, path)
            recorder.start()
            try:
                gc.freeze()
                serve_here(dataclasses.replace(settings, workers=1), recorder=path)
            finally:
                recorder.stop()
        return
    security = check_settings(settings)  # before the port is reserved
    s13 = settings.s13_address
    web = settings.web_address
    sbi = settings.sbi_address
    with (
        _metrics_dir(),  # before any worker imports prometheus_client
        _reserve_port(settings.host, settings.port, settings.address) as port,
        _reserve_face(s13, "--s13") as s13_port,
        _reserve_face(web, "--web") as web_port,
        _reserve_face(sbi, "--sbi") as sbi_port,
    ):
        counts = _prepare_store(settings)  # after the ports: a taken one leaves no store
        if s13 is not None:  # the workers bind the port the parent holds
            settings = dataclasses.replace(settings, s13=_address(s13[0], s13_port))
        if web is not None:
            settings = dataclasses.replace(settings, web=_address(web[0], web_port))
        if sbi is not None:
            settings = dataclasses.replace(settings, sbi=_address(sbi[0], sbi_port))
        settings = dataclasses.replace(settings, port=port, workers=count)
        with _recorder_dir(settings) as path:
            supervisor = _Supervisor(settings, count, counts, path)
            supervisor.security = security
            supervisor.run()


@contextlib.contextmanager
def _recorder_dir(settings: Settings) -> Iterator[Path | None]:
    """Where the recorder process listens (None: ``--no-observe``, no recorder)."""
    if not settings.observe:
        yield None
        return
    path = settings.db / "recorder.sock"
    if len(str(path.absolute())) <= _SOCKET_PATH_MAX:
        yield path.absolute()
        return
    directory = Path(tempfile.mkdtemp(prefix="ceir-recorder-"))  # 0700, fresh
    try:
        yield directory / "recorder.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _fork_child(run: Callable[[int, int], int]) -> tuple[int, int]:
    """Fork a child that runs ``run(parent_pid, ready_fd)`` and exits with its code (an
    exception is written to the ready pipe as ``error ...``); returns the child's pid and
    the read end of its ready pipe."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        code = 1
        try:
            code = run(parent, write_fd)
        except BaseException as exc:  # noqa: BLE001 - report anything, then exit
            with contextlib.suppress(OSError):
                os.write(write_fd, f"error {exc}\n".encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


class _Recorder:
    """The site's recorder process (:mod:`ceir.clones.process`), forked from the parent."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self.pid = 0

    def start(self) -> None:
        self.pid, read_fd = _fork_child(
            lambda parent, ready: _recorder(self.settings, self.path, parent, ready)
        )
        _await_ready("the recorder process", self.pid, read_fd)

    def stop(self) -> None:
        """SIGTERM; it writes what it holds, up to the grace period and a few seconds."""
        if not self.pid:
            return
        pid, self.pid = self.pid, 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace + 10
        while time.monotonic() < deadline:
            if _reaped(pid):
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _recorder(settings: Settings, path: Path, parent: int, ready_fd: int) -> int:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C: the workers drain first, then we
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    if os.getppid() != parent:
        return 0
    from ceir.clones import process

    return process.run(settings, path, ready_fd)


@contextlib.contextmanager
def _metrics_dir() -> Iterator[Path]:
    """A private, empty ``PROMETHEUS_MULTIPROC_DIR`` for the workers' shared metrics,
    set before any of them imports prometheus_client, removed when serving ends."""
    directory = Path(tempfile.mkdtemp(prefix="ceir-metrics-"))  # 0700, fresh
    os.environ[_METRICS_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(_METRICS_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def _mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the shared metrics (its counters stay)."""
    if os.environ.get(_METRICS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _prepare_store(settings: Settings) -> tuple[int, int]:
    """Create the store and load demo data (as ``ceir.server.app.prepare_store``, without
    importing gRPC before the fork), then close. Returns how many devices and TACs it holds."""
    # A replica's store is opened as its follower will open it: one left unsynced by a
    # crashed system is discarded here, before any worker maps it.
    with open_store(settings.db, durable=not settings.replica) as store:
        if settings.demo:
            demo.load_if_empty(store, secured=settings.secured)
        return store.device_count(), store.tac_count()


@contextlib.contextmanager
def _reserve_port(host: str, port: int, shown: str) -> Iterator[int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {shown}: {exc.strerror}") from exc
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _check_free(host: str, port: int, shown: str) -> None:
    """Raise ConfigError now if *port* on *host* cannot be bound (0: any port, always)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As gRPC binds: a port in TIME_WAIT after a restart is free, a listening one not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {shown}: {exc.strerror}") from exc


@contextlib.contextmanager
def _reserve_face(address: tuple[str, int] | None, flag: str) -> Iterator[int]:
    """Hold a face's port as the gRPC one is held (0 when the face is off)."""
    if address is None:
        yield 0
        return
    with _reserve_port(*address, f"{flag} {_address(*address)}") as port:
        yield port


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Supervisor:
    def __init__(
        self, settings: Settings, count: int, counts: tuple[int, int], recorder: Path | None
    ) -> None:
        self.settings = settings
        self.count = count
        self.counts = counts
        self.recorder = None if recorder is None else _Recorder(settings, recorder)
        self.workers: dict[int, int] = {}  # pid -> slot
        self.stopping = False
        self.deaths: list[float] = []
        self.security = ""

    def run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._start_all()
            host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
            log.info(
                "ceir %s serving on %s:%d; store %s (%d devices, %d TACs); "
                "unknown IMEIs are %s; %s%s; %d worker processes (pids %s)",
                version_text(),
                host,
                self.settings.port,
                self.settings.db,
                *self.counts,
                self.settings.unknown_status.value,
                self.security,
                self._faces(),
                self.count,
                " ".join(map(str, sorted(self.workers))),
            )
            self._supervise()
            started = time.monotonic()
            self._stop_all()
            log.info("stopped after %.2f s", time.monotonic() - started)
        finally:
            self._stop_all()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

    def _faces(self) -> str:
        """The faces beside gRPC, as the workers serve them (from the settings alone:
        the parent imports no face)."""
        s = self.settings
        parts = ""
        if s.s13_address is not None:
            peers = ", ".join(s.s13_peers) or "any (loopback only)"
            parts += (
                f"; S13 Diameter on {s.s13} as {s.diameter_host} (realm {s.diameter_realm}), "
                f"peers {peers}"
            )
        web = s.web_address
        if web is not None:
            from ceir.web import describe  # the package's __init__ only: no aiohttp, no grpc

            parts += f"; {describe(web[0], web[1], tls=s.tls_cert is not None)}"
        if s.sbi_address is not None:  # as ceir.network.n5g_eir.N5gEirFace.describe says it
            tls = s.tls_cert is not None
            parts += (
                f"; N5g-eir on {'https' if tls else 'http'}://{s.sbi} "
                f"({'HTTP/2 over TLS, ALPN h2' if tls else 'h2c'}, security as gRPC)"
            )
            if s.nrf is not None:
                parts += f"; registering with the NRF {s.nrf} (worker 0)"
        if self.recorder is not None:
            parts += f"; clone detection in the recorder process (pid {self.recorder.pid})"
        return parts

    def _start_all(self) -> None:
        if self.recorder is not None:
            self.recorder.start()
        pipes = {slot: self._fork(slot) for slot in range(self.count)}
        for slot, (pid, fd) in pipes.items():
            self._await_ready(slot, pid, fd)

    def _fork(self, slot: int) -> tuple[int, int]:
        path = None if self.recorder is None else self.recorder.path
        pid, read_fd = _fork_child(
            lambda parent, ready: _worker(self.settings, slot, parent, ready, path)
        )
        self.workers[pid] = slot
        return pid, read_fd

    def _await_ready(self, slot: int, pid: int, fd: int) -> None:
        _await_ready(f"worker {slot}", pid, fd)

    def _supervise(self) -> None:
        while True:
            info = signal.sigwaitinfo(_SIGNALS)
            if info.si_signo == signal.SIGCHLD:
                self._reap()
            elif info.si_signo == signal.SIGHUP:
                log.info("SIGHUP: reloading tokens and TLS files in %d workers", len(self.workers))
                for pid in self.workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGHUP)
            else:
                log.info(
                    "stopping: draining in-flight calls for up to %.1f s (%d workers, signal %d)",
                    self.settings.grace,
                    len(self.workers),
                    info.si_signo,
                )
                return

    def _reap(self) -> None:
        while self.workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            recorder = self.recorder is not None and pid == self.recorder.pid
            slot = self.workers.pop(pid, None)
            if slot is None and not recorder:
                continue
            _mark_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            now = time.monotonic()
            self.deaths = [t for t in self.deaths if now - t < _RESTART_WINDOW] + [now]
            what = "the recorder process" if recorder else f"worker {slot}"
            if len(self.deaths) > _MAX_RESTARTS:
                raise CeirError(
                    f"workers keep dying ({len(self.deaths)} in {_RESTART_WINDOW:g} s, "
                    f"last: {what}, exit {code}); giving up"
                )
            log.warning("%s (pid %d) died with exit %d; restarting it", what, pid, code)
            if self.recorder is not None and recorder:
                self.recorder.pid = 0
                self.recorder.start()  # the workers' links reconnect
                continue
            assert slot is not None
            new_pid, fd = self._fork(slot)
            self._await_ready(slot, new_pid, fd)

    def _stop_all(self) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace + 5
        while self.workers and time.monotonic() < deadline:
            gone = [pid for pid in self.workers if _reaped(pid)]  # not the recorder's
            for pid in gone:
                self.workers.pop(pid, None)
            if not gone:
                time.sleep(0.02)
        for pid in self.workers:  # still not gone after the grace period
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.workers.clear()
        if self.recorder is not None:
            self.recorder.stop()  # after the workers: it writes what they handed over


def _reaped(pid: int) -> bool:
    """Whether child *pid* has exited (and is reaped now, or was already)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _await_ready(what: str, pid: int, fd: int) -> None:
    try:
        ready, _, _ = select.select([fd], [], [], _READY_TIMEOUT)
        line = os.read(fd, 4096).decode(errors="replace").strip() if ready else ""
    finally:
        os.close(fd)
    if line != "ready":
        silent = "it exited without a word" if ready else "no word within 60 s"
        detail = line.removeprefix("error ").strip() or silent
        raise ConfigError(f"{what} (pid {pid}) did not start: {detail}")


def _worker(
    settings: Settings, slot: int, parent: int, ready_fd: int, recorder: Path | None
) -> int:
    """A worker process: its own store and aio server on the shared port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the server's reload handler is in
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    if os.getppid() != parent:  # the parent died before PDEATHSIG was set
        return 0
    import asyncio

    from ceir.server import app as server

    # The one process that follows (slot 0) writes a replica's store without fsync.
    store = open_store(settings.db, durable=not (settings.replica and slot == 0))
    gc.freeze()  # modules and tables live for good: full collections need not walk them
    try:

        async def main() -> None:
            # One process per site relays or follows: the first.
            grpc_server, _port = server.create_server(
                settings, store, background=slot == 0, recorder=recorder
            )
            await grpc_server.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            grpc_server.reloader.install(loop)  # SIGHUP (forwarded by the supervisor)
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
            log.debug("worker %d (pid %d) serving", slot, os.getpid())
            await stop.wait()
            await grpc_server.stop(settings.grace)

        with asyncio.Runner(loop_factory=server._loop_factory()) as runner:
            runner.run(main())
    finally:
        store.close()
    sys.stdout.flush()
    return 0
