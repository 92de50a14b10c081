"""The ``ceir`` command: thin. Parse flags, call the library, print, exit.

The group and the exit-code table live in :mod:`ceir.cli.app`; each command module adds
its commands to that group when imported, which this package does (and only this).
"""

from __future__ import annotations

from ceir.cli import (  # noqa: F401
    approve,
    backup,
    certs,
    check,
    clones,
    feeds,
    lists,
    purge,
    replica,
    serve,
    token,
)
from ceir.cli.app import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":  # pragma: no cover
    run()
