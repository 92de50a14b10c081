"""Writing a run's CSV files and their zipped copies, all or nothing.

Each file is written under a temporary name in the output directory and renamed into
place; if any file fails, every file of the run written so far is removed again, so a
directory never holds half a run. Rows hold digits, dates, enum names and tokens only, so
the CSV needs no quoting (``csv`` reads it back unchanged); lines end in ``\\n``.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ceir.errors import OutputError

__all__ = ["CsvFile", "Writer", "check_dir"]

_PART = ".part"


@dataclass(frozen=True, slots=True)
class CsvFile:
    """One file to write: its name, header and lines (each ending in ``\\n``)."""

    name: str
    columns: Sequence[str]
    lines: Iterable[str]


def check_dir(out: Path) -> None:
    """Make *out* if needed and make sure files can be created in it (OutputError)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make the output directory {out}: {exc.strerror}") from exc
    if not out.is_dir():
        raise OutputError(f"--out {out} is not a directory")
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in the output directory {out}: permission denied")


@dataclass
class Writer:
    """Writes files into *out*; :meth:`undo` removes what it wrote."""

    out: Path
    private: bool = False
    """Files readable by their owner only (0600): an operator's lists with clear IMSIs."""
    written: list[Path] = field(default_factory=list)

    def _target(self, name: str) -> Path:
        path = self.out / name
        if path.exists():
            raise OutputError(
                f"{path} exists already (a run in the same second?); "
                "nothing of this run is kept: run again, or give another --out"
            )
        return path

    @contextlib.contextmanager
    def _open(self, name: str) -> Iterator[Path]:
        path = self._target(name)
        part = path.with_name(path.name + _PART)
        try:
            yield part
            os.replace(part, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            raise OutputError(f"cannot write {path}: {exc.strerror}") from exc
        self.written.append(path)

    def _create(self, part: Path) -> int:
        """A new file descriptor for *part*: 0600 from the start when private."""
        return os.open(
            part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if self.private else 0o666
        )

    def csv(self, spec: CsvFile) -> Path:
        with (
            self._open(spec.name) as part,
            os.fdopen(self._create(part), "w", encoding="ascii") as f,
        ):
            f.write(",".join(spec.columns) + "\n")
            f.writelines(spec.lines)
        return self.written[-1]

    def zip(self, name: str, members: Sequence[Path]) -> Path:
        """A zip of *members* (files this writer wrote), each under its own name."""
        with (
            self._open(name) as part,
            os.fdopen(self._create(part), "wb") as f,
            zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive,
        ):
            for member in members:
                archive.write(member, member.name)
        return self.written[-1]

    def undo(self) -> None:
        """Remove every file written so far."""
        for path in self.written:
            with contextlib.suppress(OSError):
                path.unlink()
        self.written.clear()
