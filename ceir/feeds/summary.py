"""The outcome of an import: counts, the summary line, and the reject report file."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ceir.feeds import Format, ImportState

__all__ = ["ImportSummary", "NoProgress", "Progress", "Reject", "write_report"]


@dataclass(frozen=True, slots=True)
class Reject:
    """One rejected row. ``message`` never holds a personal number."""

    line: int
    field: str
    reason: str
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive copy was most of a rejected row's cost.
        return {
            "line": self.line,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
            "fix": self.fix,
        }


class Progress(Protocol):
    """Where an import reports how far it is (a progress bar, or nothing)."""

    def phase(self, name: str, total: int | None) -> None: ...
    def advance(self, n: int) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def phase(self, name: str, total: int | None) -> None:
        """Nothing to show."""

    def advance(self, n: int) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


REPORT_COLUMNS = ("file", "line", "field", "reason", "message", "fix")


def write_report(path: Path, file_name: str, rejects: Iterable[Reject]) -> int:
    """Write the reject report (CSV) to *path*; returns how many rows it holds."""
    n = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(REPORT_COLUMNS)
        for r in rejects:
            writer.writerow((file_name, r.line, r.field, r.reason, r.message, r.fix))
            n += 1
    return n


@dataclass
class ImportSummary:
    """What an import did (or would have done, when refused)."""

    kind: str
    file: str
    digest: str
    format: Format
    state: ImportState
    origin: int = 0
    rows: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    trimmed: int = 0
    fixed: int = 0
    warnings: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    message: str = ""
    report: str = ""
    """Path of the reject report, when one was written."""
    first_rejects: list[Reject] = field(default_factory=list)
    """The first few rejects, for callers that cannot read the report file."""

    @property
    def accepted(self) -> int:
        return self.added + self.changed

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """The one-line summary ``ceir import`` prints."""
        if self.state is ImportState.ALREADY_IMPORTED:
            return self.message
        refused = self.state is ImportState.REFUSED
        head = "refused" if refused else "imported"
        noun = "TACs" if self.kind == "tac" else "devices"
        rejected = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.rejected.items()))
        accepted = "acceptable, none written" if refused else "accepted"
        parts = [
            f"{head} {self.kind} {self.file}: {self.rows:,} rows",
            f"{self.accepted:,} {accepted} ({self.added:,} new {noun}, {self.changed:,} changed)",
            f"{self.unchanged:,} unchanged",
            f"{self.rejected_total:,} rejected" + (f" ({rejected})" if rejected else ""),
            f"{self.elapsed:.1f} s",
            f"{self.rows_per_s:,.0f} rows/s",
        ]
        return "; ".join(parts)

    def counts(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "rejected": dict(self.rejected),
            "malformed": self.malformed,
            "trimmed": self.trimmed,
            "fixed": self.fixed,
        }
