"""Registration feeds: one module per feed kind, the shared reader and the importer.

Data flows reader -> kind (parse a row, decide against the stored record) -> importer
(check pass, threshold gate, batched write pass with audit) -> store.
"""

from __future__ import annotations

import enum

__all__ = ["Format", "ImportState", "Kind", "StageState", "WriteOrder"]


class Kind(enum.StrEnum):
    """A feed kind: the ``KIND`` argument of ``ceir import``."""

    TAC = "tac"
    MANUFACTURER = "manufacturer"
    CUSTOMS = "customs"
    OPERATOR_DUMP = "operator-dump"
    VISITOR = "visitor"
    EXCEPTION = "exception"
    LOST_STOLEN = "lost-stolen"

    @property
    def code(self) -> int:
        """The one-byte code of the kind in ``details`` keys."""
        return _CODES[self]


_CODES = {kind: i for i, kind in enumerate(Kind, 1)}


class Format(enum.StrEnum):
    """A feed file format. ``osmocom`` and ``gsma`` are TAC database dialects."""

    CSV = "csv"
    JSONL = "jsonl"
    OSMOCOM = "osmocom"
    GSMA = "gsma"


class ImportState(enum.StrEnum):
    """Where an import stands, in its summary and in its origin record."""

    WRITING = "writing"
    """Begun: batches are being committed (an origin record only)."""
    DONE = "done"
    ALREADY_IMPORTED = "already-imported"
    """The same file, kind and rules were imported before: nothing to do."""
    NEEDS_APPROVAL = "needs-approval"
    """Held for a second principal (the two-person rule); nothing written."""
    REFUSED = "refused"
    """Refused whole by a threshold; nothing written."""


class StageState(enum.StrEnum):
    """What became of a stage of the two-person rule (its origin says ``stage-<state>``)."""

    STAGED = "staged"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class WriteOrder(enum.StrEnum):
    """The order an import's write pass takes the file's rows in (its origin record's
    ``order``; a resumed import keeps the first run's)."""

    FILE = "file"
    """Batches of consecutive rows (the row-by-row path)."""
    KEY = "key"
    """The rows that did not parse, then the others by ascending key (the bulk path)."""
