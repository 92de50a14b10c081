"""Registration feeds: one module per feed kind, the shared reader and the importer.

Data flows reader -> kind (parse a row, decide against the stored record) -> importer
(check pass, threshold gate, batched write pass with audit) -> store.
"""

from __future__ import annotations

import enum

__all__ = ["Format", "Kind"]


class Kind(enum.Enum):
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


class Format(enum.Enum):
    """A feed file format. ``osmocom`` and ``gsma`` are TAC database dialects."""

    CSV = "csv"
    JSONL = "jsonl"
    OSMOCOM = "osmocom"
    GSMA = "gsma"
