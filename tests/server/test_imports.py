"""Issue 10 §4: a served import runs in a child process (ceir.server.imports), bounded and
killed with its call; a killed import, sent again, ends as one uninterrupted run would."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from ceir.feeds import Kind
from ceir.feeds.base import Options
from ceir.feeds.gen import POOL, generate
from ceir.feeds.importer import import_file
from ceir.store import open_store
from ceir.v1 import registry_pb2, registry_pb2_grpc
from tests.server.test_registry import _Running
from tests.server.test_supervisor import _start

pytestmark = pytest.mark.timeout(180)

ROWS = 90_000  # under the default two-person threshold (100,000), ~45 served batches


def _children(pid: int) -> set[int]:
    """The import processes among *pid*'s descendants (a worker's children too)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = (task / "children").read_text().split()
            except OSError:  # the thread ended meanwhile
                continue
            for child in kids:
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"ceir.server.imports" in cmdline:
                    found.add(int(child))
                else:
                    todo.append(int(child))
    return found


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def _messages(data: bytes, name: str) -> Iterator[registry_pb2.ImportFeedRequest]:
    kind = registry_pb2.FEED_KIND_TAC if name == "tac.csv" else registry_pb2.FEED_KIND_MANUFACTURER
    yield registry_pb2.ImportFeedRequest(header=registry_pb2.ImportHeader(kind=kind, filename=name))
    for i in range(0, len(data), 1 << 20):
        yield registry_pb2.ImportFeedRequest(chunk=data[i : i + (1 << 20)])


def _send_again(
    stub: registry_pb2_grpc.RegistryStub, maker: Path
) -> registry_pb2.ImportFeedResponse:
    """The file again, once the server has finished with the cancelled call (until then
    the principal still has an import running)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            answer: registry_pb2.ImportFeedResponse = stub.ImportFeed(
                _messages(maker.read_bytes(), "maker.csv"), timeout=120
            )
        except grpc.RpcError as exc:
            busy = "already has an import running" in (exc.details() or "")
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return answer


def _files(tmp_path: Path) -> tuple[Path, Path]:
    tacs, maker = tmp_path / "tac.csv", tmp_path / "maker.csv"
    generate(Kind.TAC, POOL, tacs)
    generate(Kind.MANUFACTURER, ROWS, maker, dirt=0.01, seed=3)
    return tacs, maker


def test_cancelled_import_kills_its_process_and_resumes_exactly(tmp_path: Path) -> None:
    """The import runs in a child of the serving process; cancelling the call mid-import
    kills it; the same file sent again completes it, and the register holds what an
    uninterrupted import of the file gives."""
    tacs, maker = _files(tmp_path)
    db = tmp_path / "db"
    store = open_store(db)
    running = _Running(store, db)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            assert stub.ImportFeed(_messages(tacs.read_bytes(), "tac.csv"), timeout=60).added
            tac_rows = store.device_count()
            call = stub.ImportFeed.future(_messages(maker.read_bytes(), "maker.csv"), timeout=120)
            assert _wait(lambda: bool(_children(os.getpid())), 30), "no import process"
            (child,) = _children(os.getpid())
            assert _wait(lambda: store.device_count() > tac_rows, 60), "nothing was written"
            call.cancel()
            assert _wait(lambda: not _alive(child), 10), "the import process outlived its call"
            partial = store.device_count()
            assert partial < ROWS, "the import finished before it was cancelled"
            again = _send_again(stub, maker)
        assert again.state == registry_pb2.IMPORT_STATE_DONE, again.message
        assert again.rows == ROWS
        assert again.added + again.rejected == ROWS
        resumed = store.dump()["devices"]
    finally:
        running.stop()
        store.close()
    reference = open_store(tmp_path / "reference")
    try:
        import_file(reference, Kind.TAC, tacs, actor="test")
        whole = import_file(reference, Kind.MANUFACTURER, maker, actor="test", options=Options())
        assert (whole.added, whole.rejected_total) == (again.added, again.rejected)
        assert reference.dump()["devices"] == resumed
    finally:
        reference.close()


def test_import_process_ends_with_its_server(tmp_path: Path) -> None:
    """A serving process killed outright (SIGKILL: no drain, no clean-up) takes its import
    process with it: the child ends when its stdin closes."""
    tacs, maker = _files(tmp_path)
    served = _start(tmp_path, "--workers", "1", "--web", "off", "--s13", "off", "--sbi", "off")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            assert stub.ImportFeed(_messages(tacs.read_bytes(), "tac.csv"), timeout=60).added
            call = stub.ImportFeed.future(_messages(maker.read_bytes(), "maker.csv"), timeout=120)
            assert _wait(lambda: bool(_children(served.proc.pid)), 30), "no import process"
            (child,) = _children(served.proc.pid)
            serving = _parent(child)  # the serving process (the server, or its worker)
            os.kill(serving, signal.SIGKILL)
            if serving == served.proc.pid:
                served.proc.wait(10)
            assert _wait(lambda: not _alive(child), 10), "the import process outlived its server"
            with pytest.raises(grpc.RpcError):
                call.result(timeout=30)
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()
        served.handle.close()
