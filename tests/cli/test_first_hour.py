"""A newcomer's first hour (issue 9 §3): every mistake ends in one line and a documented code.

Black-box: each test runs the installed ``ceir`` command in a subprocess, as a new user
would, and asserts the exit code, the one-line message on stderr, and that no output
holds a Python traceback (or a gRPC C-core abort).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CEIR = Path(sys.executable).with_name("ceir")
ROOT = Path(__file__).resolve().parents[2]
IMPOSSIBLE = Path("/proc/ceir-newcomer")  # /proc takes no new files, not even from root


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEIR_")}
    env.update(extra or {})
    return env


def ceir(*args: str | Path, cwd: Path | None = None, timeout: float = 60) -> Ran:
    """Run ``ceir ARGS`` as a user would (no CEIR_* variables from the test's environment)."""
    done = subprocess.run(
        [str(CEIR), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def one_line(ran: Ran, code: int, *fragments: str) -> str:
    """Assert *ran* exited *code* with one ``ceir: ...`` line on stderr holding *fragments*."""
    assert "Traceback" not in ran.stdout + ran.stderr, ran.stderr
    assert ran.code == code, (ran.code, ran.stderr)
    lines = ran.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ceir: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def usage_error(ran: Ran, *fragments: str) -> str:
    """Assert a click usage error (exit 2) whose ``Error:`` line holds *fragments*."""
    assert "Traceback" not in ran.stdout + ran.stderr, ran.stderr
    assert ran.code == 2, (ran.code, ran.stderr)
    errors = [line for line in ran.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, ran.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def luhn(body: str) -> str:
    """*body* (14 digits) with its check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def tac_file(path: Path) -> Path:
    path.write_text("tac,brand,model,device_type\n35209900,Nusantara,N1,Smartphone\n")
    return path


def new_store(tmp_path: Path, name: str = "db") -> Path:
    db = tmp_path / name
    ran = ceir("import", "tac", tac_file(tmp_path / f"{name}-tac.csv"), "--db", db, "--create")
    assert ran.code == 0, ran.stderr
    return db


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``ceir serve ARGS --port 0`` in a subprocess; its log lines collected by a thread."""

    def __init__(self, *args: str | Path) -> None:
        self.process = subprocess.Popen(
            [str(CEIR), "serve", "--port", "0", *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = int(self.wait_for(r"serving on 127\.0\.0\.1:(\d+)").group(1))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in {self.seen}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def serve() -> Iterator[list[Serve]]:
    """Servers a test starts (append them); each is stopped in teardown."""
    started: list[Serve] = []
    yield started
    for server in started:
        server.stop()


# -- unwritable or impossible paths -----------------------------------------------------


def test_serve_on_an_impossible_store_path_exits_5(tmp_path: Path) -> None:
    """`ceir serve --db /proc/x`: the store directory cannot be made; one line, exit 5."""
    ran = ceir("serve", "--db", IMPOSSIBLE, "--port", "0", "--workers", "1")
    one_line(ran, 5, f"cannot create the store directory {IMPOSSIBLE}")


def test_import_on_an_impossible_store_path_exits_5(tmp_path: Path) -> None:
    """`ceir import ... --db /proc/x --create`: one line, exit 5."""
    ran = ceir("import", "tac", tac_file(tmp_path / "t.csv"), "--db", IMPOSSIBLE, "--create")
    one_line(ran, 5, f"cannot create the store directory {IMPOSSIBLE}")


@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--port", "0", "--workers", "1"),
        ("import", "tac", "TAC"),
        ("import", "tac", "TAC", "--create"),
        ("audit", "352099001761481"),
        ("purge",),
    ],
    ids=["serve", "import", "import-create", "audit", "purge"],
)
def test_db_naming_a_regular_file_exits_5(tmp_path: Path, command: tuple[str, ...]) -> None:
    """`--db` naming a regular file: "is a file, not a store directory", exit 5, file intact."""
    regular = tmp_path / "notes.txt"
    regular.write_text("not a store\n")
    args = [str(tac_file(tmp_path / "t.csv")) if a == "TAC" else a for a in command]
    ran = ceir(*args, "--db", regular)
    one_line(ran, 5, f"{regular} is a file, not a store directory")
    assert regular.read_text() == "not a store\n"


def test_backup_to_an_impossible_path_exits_5(tmp_path: Path) -> None:
    """`ceir backup /proc/bk`: the backup cannot be written; one line, exit 5."""
    db = new_store(tmp_path)
    ran = ceir("backup", IMPOSSIBLE / "bk", "--db", db)
    one_line(ran, 5, f"cannot write the backup {IMPOSSIBLE / 'bk'}")


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (("gen", "tac", "OUT"), "OUT"),
        (("certs", "OUT"), "OUT"),
        (("token", "add", "portal", "--role", "consumer", "--tokens", "OUT"), "OUT"),
    ],
    ids=["gen", "certs", "token-add"],
)
def test_an_unwritable_output_exits_6(tmp_path: Path, args: tuple[str, ...], path: str) -> None:
    """gen, certs and token add to a path under /proc: "cannot write PATH", exit 6."""
    out = str(IMPOSSIBLE / "out.x")
    ran = ceir(*(out if a == path else a for a in args))
    one_line(ran, 6, f"cannot write {out}")


def test_import_checks_the_reject_report_can_be_written_first(tmp_path: Path) -> None:
    """`--rejects /proc/r.csv`: refused before anything is written (exit 6); the same file
    then imports normally (it was not recorded as imported)."""
    db = new_store(tmp_path)
    feed = tmp_path / "t2.csv"
    feed.write_text("tac,brand,model,device_type\n01234500,Acme,One,Tablet\nbad,x,y,z\n")
    ran = ceir("import", "tac", feed, "--db", db, "--rejects", IMPOSSIBLE / "r.csv")
    one_line(ran, 6, f"cannot write the reject report {IMPOSSIBLE / 'r.csv'}", "nothing")
    report = tmp_path / "r.csv"
    again = ceir(
        "import", "tac", feed, "--db", db, "--rejects", report, "-q", "--max-bad-ratio", "1"
    )
    assert again.code == 0, again.stderr
    assert again.stdout.startswith("imported tac t2.csv: 2 rows; 1 accepted"), again.stdout
    assert (tmp_path / "r.csv").read_text().count("\n") == 2  # header + the bad row


# -- a truncated or damaged store --------------------------------------------------------


def _truncate(db: Path) -> None:
    data = db / "data.mdb"
    size = data.stat().st_size
    with data.open("r+b") as f:
        f.truncate(size // 2)


def _zero_meta(db: Path) -> None:
    data = db / "data.mdb"
    with data.open("r+b") as f:
        f.write(b"\0" * 8192)


@pytest.mark.parametrize("damage", [_truncate, _zero_meta], ids=["truncated", "zeroed-meta"])
@pytest.mark.parametrize(
    "command",
    [
        ("serve", "--port", "0", "--workers", "1"),
        ("serve", "--port", "0", "--workers", "2"),
        ("audit", "352099001761481"),
        ("import", "tac", "TAC"),
        ("purge",),
        ("backup", "BK"),
    ],
    ids=["serve", "serve-2", "audit", "import", "purge", "backup"],
)
def test_a_damaged_store_is_refused_before_it_is_mapped(
    tmp_path: Path, damage: object, command: tuple[str, ...]
) -> None:
    """Every command that opens a store checks its file first: exit 5, no SIGBUS (135)."""
    db = new_store(tmp_path)
    for _ in range(3):  # a few pages more, so that half the file loses some
        feed = tmp_path / f"more{_}.csv"
        rows = "".join(f"{35209900 + 1000 * _ + i:08d},B,M,Phone\n" for i in range(300))
        feed.write_text("tac,brand,model,device_type\n" + rows)
        assert ceir("import", "tac", feed, "--db", db, "-q").code == 0
    assert callable(damage)
    damage(db)
    args = [
        str(tac_file(tmp_path / "t.csv"))
        if a == "TAC"
        else str(tmp_path / "bk")
        if a == "BK"
        else a
        for a in command
    ]
    ran = ceir(*args, "--db", db)
    line = one_line(ran, 5, str(db / "data.mdb"))
    assert "truncated" in line or "not an LMDB file" in line


# -- writing commands refuse a missing store -------------------------------------------------


@pytest.mark.parametrize("command", [("import", "tac", "TAC"), ("purge",)], ids=["import", "purge"])
def test_a_typo_in_db_is_refused_not_created(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A --db that does not exist: "no ceir store at X; give --create", exit 5, nothing made;
    with --create the store is made."""
    typo = tmp_path / "registr"
    args = [str(tac_file(tmp_path / "t.csv")) if a == "TAC" else a for a in command]
    ran = ceir(*args, "--db", typo)
    one_line(ran, 5, f"no ceir store at {typo}", "--create")
    assert not typo.exists()
    created = ceir(*args, "--db", typo, "--create")
    assert created.code == 0, created.stderr
    assert (typo / "data.mdb").exists()


def test_the_default_store_is_created_without_create(tmp_path: Path) -> None:
    """The default path (var/ceir) is created by a first import, as the README shows."""
    ran = ceir("import", "tac", tac_file(tmp_path / "t.csv"), "-q", cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    assert (tmp_path / "var" / "ceir" / "data.mdb").exists()


# -- stage ids, help -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("import",), ("purge",)])
def test_help_documents_create_and_exit_codes(command: tuple[str, ...]) -> None:
    """--create and the exit codes are in the writing commands' help."""
    ran = ceir(*command, "--help")
    assert ran.code == 0
    assert "--create" in ran.stdout
    for code in range(11):
        assert re.search(rf"\b{code} ", ran.stdout), code
