"""The store: the only package that imports lmdb.

Environments and tables (:mod:`ceir.store.env`), the append-only audit log
(:mod:`~ceir.store.audit`), identity tokens (:mod:`~ceir.store.identity`), backup and
verify (:mod:`~ceir.store.backup`) and the demo data (:mod:`~ceir.store.demo`).
"""

from __future__ import annotations

from ceir.store.env import (
    LMDB_VERSION,
    REGISTRY_DBS,
    SCHEMA_VERSION,
    Store,
    TacInfo,
    exists,
    open_store,
)

__all__ = [
    "LMDB_VERSION",
    "REGISTRY_DBS",
    "SCHEMA_VERSION",
    "Store",
    "TacInfo",
    "exists",
    "open_store",
]
