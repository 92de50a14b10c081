"""The one exception root of ceir and its specific kinds.

Errors are raised deep and translated only at the edges: the gRPC status table in
:mod:`ceir.server.app` and the exit codes in :mod:`ceir.cli`. This module imports nothing heavy.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the bottom layer imports nothing of ceir at run time
    from ceir.feeds.rows import RejectReason
    from ceir.feeds.summary import ImportSummary


class CeirError(Exception):
    """Root of every error ceir raises on purpose."""


class InvalidReason(enum.Enum):
    """Machine-readable cause of an :class:`InvalidImeiError`."""

    EMPTY = "empty"
    NON_DIGIT = "non_digit"
    BAD_LENGTH = "bad_length"
    BAD_CHECK_DIGIT = "bad_check_digit"
    OUT_OF_RANGE = "out_of_range"


class InvalidImeiError(CeirError, ValueError):
    """The text is not a 14-digit IMEI, a 15-digit IMEI with a valid check digit, or an IMEISV."""

    def __init__(self, reason: InvalidReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigError(CeirError):
    """A setting has a value ceir cannot use."""


class OutputError(ConfigError):
    """A file or directory ceir was told to write cannot be written (path, permission, space)."""


class StoreError(CeirError):
    """The LMDB store cannot be opened, read or written."""


class StoreSchemaError(StoreError):
    """The store was written by a ceir with a layout this version does not know."""


class ReplicationError(CeirError):
    """A replica cannot follow the central register (no snapshot, a gap it must bootstrap over)."""


class RefusedMessageError(ReplicationError):
    """A replication message or snapshot does not verify: junk, forged, damaged or replayed."""


class LimitError(CeirError):
    """A request goes beyond a configured limit (batch size, message size)."""


class DailyLimitError(LimitError):
    """A single write would take its principal or channel past the rolling 24-hour limit
    (:mod:`ceir.feeds.volume`); gRPC RESOURCE_EXHAUSTED."""


class RemoteError(CeirError):
    """A ceir server did not give an answer (raised by :mod:`ceir.client`)."""


class UnavailableError(RemoteError):
    """The server cannot be reached, or the connection broke and retries ran out."""


class DeadlineError(RemoteError):
    """No answer arrived within the deadline."""


class RejectedError(RemoteError):
    """The server refused the request (limits, authentication, permission)."""


class ClientClosedError(RemoteError):
    """The client was closed before the answer arrived."""


class FeedError(CeirError):
    """A feed file cannot be imported as a whole (unreadable, wrong columns, refused)."""


class FeedFormatError(FeedError):
    """A feed file is not in the format its kind expects (encoding, header, columns)."""


class FeedRefusedError(FeedError):
    """A whole feed file was refused by a threshold; nothing was written.

    ``summary`` is the :class:`ceir.feeds.summary.ImportSummary` of the check pass.
    """

    def __init__(self, message: str, summary: ImportSummary) -> None:
        super().__init__(message)
        self.summary = summary


class NotFoundError(CeirError):
    """The register holds nothing under the name asked for."""


class UnknownRunError(NotFoundError):
    """No finished list-export run has the id asked for (``ceir lists export --base``)."""


class ForbiddenError(CeirError):
    """The principal may not do this (wrong role, another operator's data, its own stage)."""


class StageExpiredError(CeirError):
    """A staged bulk import was not approved in time; it has been dropped."""


class StageMismatchError(CeirError):
    """An approval names a digest other than the stage's: the approver was shown another
    file (gRPC FAILED_PRECONDITION); nothing is applied."""


class InvalidRequestError(CeirError):
    """A request is malformed as a whole (unknown kind or field names, no header first)."""


class RuleError(CeirError):
    """A well-formed registration breaks a channel rule or conflicts with the register.

    ``reason`` is the reject reason (``quota``, ``cooldown``, ``conflict``, ...).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class FeedRowError(CeirError):
    """One feed row is bad or breaks a channel rule: which field, why, and the fix if obvious.

    ``reason`` is a :class:`ceir.feeds.rows.RejectReason`; the importer adds the line.
    The message never contains a personal number.
    """

    def __init__(self, field: str, reason: RejectReason, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.message = message
        self.fix = fix
