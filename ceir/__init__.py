"""ceir: a national IMEI registry (CEIR) and the CheckIMEI service operator EIRs call."""

from __future__ import annotations

from ceir.errors import CeirError, InvalidImeiError
from ceir.imei import Imei, parse, parse_lenient

__version__ = "0.1.0"
__all__ = [
    "CeirError",
    "Imei",
    "InvalidImeiError",
    "__version__",
    "parse",
    "parse_lenient",
    "version_text",
]


def version_text() -> str:
    """What ``ceir --version``, the start-up line, health and ``/version`` say:
    ``0.1.0 (store schema 1)``."""
    from ceir.store import SCHEMA_VERSION  # lmdb only when asked

    return f"{__version__} (store schema {SCHEMA_VERSION})"
