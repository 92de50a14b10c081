"""The ceir command: exact output and exit codes, help everywhere, and `ceir serve`'s life."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from ceir import __version__
from ceir.cli.app import fail, main
from ceir.config import Settings
from ceir.errors import (
    CeirError,
    ConfigError,
    FeedFormatError,
    ForbiddenError,
    InvalidImeiError,
    InvalidReason,
    StageExpiredError,
    StoreSchemaError,
    UnavailableError,
    UnknownRunError,
)
from ceir.security.principals import Role
from ceir.security.tokens import TokenBook
from ceir.store import SCHEMA_VERSION, demo, open_store
from tests._serving import serving
from tests.conftest import RunningServer

REGISTERED_LINES = [
    "IMEI     352099001761481 (35-209900-176148-1)",
    "Status   Registered: this device can be used on mobile networks.",
    "Device   Nusantara N1 (Smartphone)",
]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def check(server: RunningServer, *args: str) -> Result:
    return invoke("check", *args, "--server", server.address)


def expiry_date(server: RunningServer, imei: str) -> str:
    record = next(d.record for d in demo.devices(server.loaded_at) if d.imei == imei)
    assert record is not None
    return time.strftime("%Y-%m-%d", time.gmtime(record.expires_at))


# -- ceir check --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("imei", "code", "status", "device"),
    [
        (
            "352099001761481",
            0,
            "Registered: this device can be used on mobile networks.",
            "Nusantara N1 (Smartphone)",
        ),
        (
            "356868000041418",
            0,
            "Registered: this device can be used on mobile networks.",
            "Nusantara N1 Pro (Smartphone)",
        ),
        (
            "490154203237518",
            0,
            "Registered: this device can be used on mobile networks.",
            "Komodo K2 Lite (Feature phone)",
        ),
        (
            "012345000000013",
            0,
            "Registered: this device can be used on mobile networks.",
            "Merapi M5 (Smartphone)",
        ),
        (
            "860123450000020",
            1,
            "Expired: this device's temporary registration has ended; it will not connect.",
            "Garuda Tab 10 (Tablet)",
        ),
        (
            "352099001761499",
            1,
            "Blocked: this device has been reported lost or stolen and will not connect.",
            "Nusantara N1 (Smartphone)",
        ),
        (
            "352099009999992",
            1,
            "Not registered: this device will not get mobile service.",
            "Nusantara N1 (Smartphone)",
        ),
        (
            "999999990000016",
            1,
            "Not registered: this device will not get mobile service.",
            "unknown (TAC 99999999 is not in the TAC database)",
        ),
    ],
)
def test_check_prints_status_and_device(
    demo_server: RunningServer, imei: str, code: int, status: str, device: str
) -> None:
    """`ceir check` prints the IMEI, the status in plain words and the device; 0 or 1."""
    result = check(demo_server, imei)
    formatted = f"{imei[:2]}-{imei[2:8]}-{imei[8:14]}-{imei[14]}"
    assert result.stdout.splitlines() == [
        f"IMEI     {imei} ({formatted})",
        f"Status   {status}",
        f"Device   {device}",
    ]
    assert result.stderr == ""
    assert result.exit_code == code


def test_check_temporary_says_until_when(demo_server: RunningServer) -> None:
    """A temporary registration shows its end date and exits 0."""
    result = check(demo_server, "860123450000012")
    until = expiry_date(demo_server, "860123450000012")
    assert result.stdout.splitlines()[1] == (
        f"Status   Temporarily registered until {until} (UTC); it can connect until then."
    )
    assert result.exit_code == 0


@pytest.mark.parametrize("typed", ["35-209900-176148-1", "35 209900 176148 1", "35209900176148"])
def test_check_accepts_what_people_type(demo_server: RunningServer, typed: str) -> None:
    """Dashes, spaces and a missing check digit are fine; the answer shows the canonical IMEI."""
    result = check(demo_server, typed)
    assert (result.exit_code, result.stdout.splitlines()) == (0, REGISTERED_LINES)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("35-209900-17614X-1", "IMEI must be digits only; found 'X' at position 16"),
        ("352099001761482", "check digit 2 does not match; expected 1"),
        (
            "1234",
            "IMEI has 4 digits; expected 14 (no check digit), 15 (with check digit) or 16 (IMEISV)",
        ),
    ],
)
def test_check_invalid_imei_exits_3(demo_server: RunningServer, typed: str, message: str) -> None:
    """An invalid IMEI prints what is wrong on stderr, nothing on stdout, and exits 3."""
    result = check(demo_server, typed)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == f"ceir: {typed!r} is not a valid IMEI: {message}\n"


def test_check_empty_imei_exits_3() -> None:
    """An empty argument is an invalid IMEI, caught before any call."""
    result = invoke("check", "", "--server", "127.0.0.1:1")
    assert (result.exit_code, result.stderr) == (3, "ceir: '' is not a valid IMEI: IMEI is empty\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_unreachable_server_exits_4() -> None:
    """No server at the address: a message naming the address and `ceir serve`, exit 4."""
    address = f"127.0.0.1:{free_port()}"
    result = invoke("check", "352099001761481", "--server", address, "--timeout", "2")
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.startswith(f"ceir: no answer from the ceir server at {address} (")
    assert result.stderr.endswith("); is `ceir serve` running?\n")


def test_check_without_credentials_on_a_secured_server_exits_9(tmp_path: Path) -> None:
    """A server with bearer tokens refuses an anonymous `ceir check` (exit 9, saying how to
    authenticate, not that the server is down) and answers one with a token (exit 0)."""
    book, secret = TokenBook().add("portal", Role.CONSUMER)
    book.save(tmp_path / "tokens.json")
    with serving(Settings(db=tmp_path / "db", tokens=tmp_path / "tokens.json")) as running:
        server = ["--server", running.address]
        anonymous = invoke("check", "352099001761481", *server)
        assert anonymous.exit_code == 9
        assert anonymous.stderr == (
            f"ceir: the ceir server at {running.address} does not allow this call "
            "(UNAUTHENTICATED: authentication required); give --token, or --cert and --key, "
            "of a principal that may make it\n"
        )
        allowed = invoke("check", "352099001761481", *server, "--token", secret)
        assert (allowed.exit_code, allowed.stdout.splitlines()) == (0, REGISTERED_LINES)


def test_check_server_from_environment(demo_server: RunningServer) -> None:
    """CEIR_SERVER sets the address, like the --server flag."""
    result = invoke("check", "352099001761481", env={"CEIR_SERVER": demo_server.address})
    assert (result.exit_code, result.stdout.splitlines()) == (0, REGISTERED_LINES)


def test_check_json(demo_server: RunningServer) -> None:
    """--json prints one JSON object with the plain state name and every answer field."""
    result = check(demo_server, "35-209900-176148-1", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "imei": "352099001761481",
        "tac": "35209900",
        "state": "REGISTERED",
        "summary": "Registered: this device can be used on mobile networks.",
        "brand": "Nusantara",
        "model": "N1",
        "device_type": "Smartphone",
        "allowed": True,
    }
    assert result.stdout.count("\n") == 1


def test_check_json_temporary_and_refused(demo_server: RunningServer) -> None:
    """--json carries valid_until for a temporary device, and exit codes stay the same."""
    temporary = check(demo_server, "860123450000012", "--json")
    answer = json.loads(temporary.stdout)
    assert (temporary.exit_code, answer["state"]) == (0, "TEMPORARY")
    assert answer["valid_until"].startswith(expiry_date(demo_server, "860123450000012") + "T")
    stolen = check(demo_server, "352099001761499", "--json")
    assert (stolen.exit_code, json.loads(stolen.stdout)["state"]) == (1, "BLOCKED")


# -- help and version --------------------------------------------------------------


def all_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))
        else:
            yield (*path, name)


@pytest.mark.parametrize("path", list(all_commands(main)), ids=lambda p: " ".join(p) or "ceir")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    """Every command and subcommand answers --help with a description, exit 0."""
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help, f"`ceir {' '.join(path)}` has no description"


def leaf_contexts(
    group: click.Group, parent: click.Context | None = None
) -> Iterator[click.Context]:
    """A context for every leaf command, built the way click builds it for a real call."""
    for name, command in group.commands.items():
        ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
        if isinstance(command, click.Group):
            yield from leaf_contexts(command, ctx)
        else:
            yield ctx


def test_every_flag_reads_ceir_flag_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each flag of each command reads CEIR_<FLAG> (--tokens: CEIR_TOKENS), whatever the
    name of its parameter, as the help's epilog promises."""
    root = click.Context(main, info_name="ceir", **main.context_settings)
    wrong = []
    for ctx in leaf_contexts(main, root):
        for option in ctx.command.params:
            if not isinstance(option, click.Option) or option.name == "help":
                continue
            flag = max(option.opts, key=len).removeprefix("--")
            envvar = "CEIR_" + flag.upper().replace("-", "_")
            monkeypatch.setenv(envvar, "from-env")
            if option.resolve_envvar_value(ctx) != "from-env":
                wrong.append(f"{ctx.command_path} --{flag}")
            monkeypatch.delenv(envvar)
    assert wrong == []


def test_help_documents_exit_codes() -> None:
    """`ceir --help` lists the commands and the exit codes."""
    result = invoke("--help")
    assert "serve" in result.stdout
    assert "check" in result.stdout
    assert "3 invalid IMEI, 4 server unreachable" in result.stdout


def test_version() -> None:
    """`ceir --version` prints the package version and the store schema it reads."""
    result = invoke("--version")
    expected = f"ceir {__version__} (store schema {SCHEMA_VERSION})\n"
    assert (result.exit_code, result.stdout) == (0, expected)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidImeiError(InvalidReason.EMPTY, "IMEI is empty"), 3),
        (UnavailableError("down"), 4),
        (StoreSchemaError("schema 9"), 5),
        (ConfigError("bad"), 6),
        (FeedFormatError("no header"), 7),
        (ForbiddenError("you staged it"), 9),
        (StageExpiredError("stage 1 expired"), 10),
        (UnknownRunError("--base 5: no finished list export has that run id"), 2),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_each_error_exits_with_its_documented_code(error: CeirError, code: int) -> None:
    """The CLI's one error table gives each error the exit code `ceir --help` documents,
    with the message on stderr."""
    runner = CliRunner()

    @click.command()
    def failing() -> None:
        fail(error)

    result = runner.invoke(failing)
    assert (result.exit_code, result.stderr) == (code, f"ceir: {error}\n")


def test_usage_error_exits_2() -> None:
    """An unknown flag is a usage error, exit 2."""
    assert invoke("check", "--nope").exit_code == 2


# -- ceir serve --------------------------------------------------------------------


def test_serve_bad_port_exits_6(tmp_path: Path) -> None:
    """An out-of-range port (flag or CEIR_PORT) is bad configuration: exit 6 with a message."""
    result = invoke("serve", "--db", str(tmp_path / "s"), "--port", "70000")
    assert (result.exit_code, result.stderr) == (6, "ceir: port 70000 is out of range 0..65535\n")
    result = invoke("serve", "--db", str(tmp_path / "s"), env={"CEIR_PORT": "70001"})
    assert (result.exit_code, result.stderr) == (6, "ceir: port 70001 is out of range 0..65535\n")


def test_serve_refuses_store_of_other_schema_exit_5(tmp_path: Path) -> None:
    """A store of another layout version is refused with its message, exit 5."""
    path = tmp_path / "s"
    with open_store(path) as store:
        store._write_txn(lambda txn: txn.put(b"schema", b"99", db=store.meta))
    result = invoke("serve", "--db", str(path), "--port", "0")
    assert result.exit_code == 5
    assert result.stderr.startswith(f"ceir: store {path} has schema version '99'")


class ServeProcess:
    """`ceir serve` in a subprocess, its stderr lines collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from ceir.cli import run; run()", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in {self.seen}")

    def stop(self) -> None:
        """Kill the process if it still runs, and release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def test_serve_logs_start_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`ceir serve --port 0` logs one start line with the bound port, store and counts,
    answers `ceir check`, and on SIGTERM drains, logs and exits 0."""
    db = tmp_path / "store"
    server = ServeProcess("--db", str(db), "--port", "0", "--grace", "1")
    try:
        server.wait_for(r"empty store: loaded demo data \(7 devices, 5 TACs\)")
        start = server.wait_for(
            rf"ceir {re.escape(__version__)} \(store schema {SCHEMA_VERSION}\) "
            r"serving on 127\.0\.0\.1:(\d+); "
            rf"store {re.escape(str(db))} \(7 devices, 5 TACs\); unknown IMEIs are blacklisted"
        )
        port = int(start.group(1))
        assert port != 0
        result = invoke("check", "352099001761481", "--server", f"127.0.0.1:{port}")
        assert (result.exit_code, result.stdout.splitlines()) == (0, REGISTERED_LINES)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for(r"stopping: draining in-flight calls for up to 1\.0 s")
        server.wait_for(r"stopped after")
        assert server.process.wait(timeout=10) == 0
    finally:
        server.stop()
    assert sum("serving on" in line for line in server.seen) == 1


def test_serve_sigint_and_existing_store(tmp_path: Path) -> None:
    """A second start on the same store loads no demo data again; SIGINT also exits 0."""
    db = tmp_path / "store"
    with open_store(db) as store:
        demo.load(store)
    server = ServeProcess("--db", str(db), "--port", "0")
    try:
        start = server.wait_for(r"serving on 127\.0\.0\.1:(\d+); store .* \(7 devices, 5 TACs\)")
        assert not any("loaded demo data" in line for line in server.seen)
        # An answer means the event loop is past start-up, signal handlers included.
        result = invoke("check", "352099001761499", "--server", f"127.0.0.1:{start.group(1)}")
        assert result.exit_code == 1
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=15) == 0
    finally:
        server.stop()
