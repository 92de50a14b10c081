"""The seam every face of ``ceir serve`` plugs into: the gRPC server's neighbours (the web
page, N5g-eir, S13) run in the same asyncio loop of every worker, started after the store
is open and drained on SIGTERM with the same grace.

A face binds its own port (with ``SO_REUSEPORT`` when there are several workers) in
:meth:`Face.start`, never in its constructor, and answers from the same store and
:class:`~ceir.policy.Policy` as CheckIMEI.
"""

from __future__ import annotations

from typing import Protocol


class Face(Protocol):
    """One door into the register, beside the gRPC server."""

    async def start(self) -> None:
        """Bind the port and start answering."""

    async def stop(self, grace: float | None) -> None:
        """Stop accepting, let in-flight requests finish within *grace* seconds, close."""

    def describe(self) -> str:
        """What the start-up line says about it, e.g. ``web on http://127.0.0.1:8080``."""
