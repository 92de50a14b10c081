"""Bearer tokens: a file of principals, each with the SHA-256 of its secret token.

The clear token is shown once, by ``ceir token add``, and never stored: a token is
256 random bits, so a plain SHA-256 is enough to make a stolen file useless. The file
is JSON, written atomically with mode 0600::

    {"version": 1, "tokens": [{"name": "telkomsel", "role": "operator",
      "operator_id": "510-10", "sha256": "...", "created_at": 1790000000}]}

A caller sends ``authorization: Bearer <token>`` in the call metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ceir.errors import ConfigError, OutputError
from ceir.security.principals import Principal, Role, check_name

PREFIX = "ceir_"
_VERSION = 1


def digest(token: str) -> str:
    """The hex SHA-256 a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One principal in the file: who it is and the hash of its token."""

    principal: Principal
    sha256: str
    created_at: int


class TokenBook:
    """The principals that may authenticate with a bearer token."""

    def __init__(self, entries: list[TokenEntry] | None = None) -> None:
        self.entries = list(entries or [])
        self._by_digest = {e.sha256: e.principal for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def authenticate(self, token: str) -> Principal | None:
        """The principal whose token this is, or None."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        return self._by_digest.get(digest(token))

    def add(
        self, name: str, role: Role, operator_id: str = "", person: str = ""
    ) -> tuple[TokenBook, str]:
        """A new book with *name* added, and its clear token (shown once). *person*: who
        the token belongs to (default: *name*); one person's tokens approve nothing of
        each other's."""
        check_name(name)
        if any(e.principal.name == name for e in self.entries):
            raise ConfigError(f"a token named {name!r} exists; revoke it first")
        principal = Principal(name, role, operator_id, via="token", person=person)
        token = PREFIX + secrets.token_urlsafe(32)
        entry = TokenEntry(principal, digest(token), int(time.time()))
        return TokenBook([*self.entries, entry]), token

    def revoke(self, name: str) -> TokenBook:
        """A new book without *name*."""
        kept = [e for e in self.entries if e.principal.name != name]
        if len(kept) == len(self.entries):
            raise ConfigError(f"no token named {name!r}")
        return TokenBook(kept)

    # -- the file --------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        """Read a token file; a missing or empty file is an empty book (which, configured,
        refuses every caller: security never turns itself off)."""
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {path}: {exc}") from exc
        if not raw.strip():
            return cls()
        try:
            data = json.loads(raw)
            if data.get("version") != _VERSION:
                raise ConfigError(f"token file {path} has unknown version {data.get('version')}")
            entries = [
                TokenEntry(
                    Principal(
                        check_name(item["name"]),
                        Role(item["role"]),
                        item.get("operator_id", ""),
                        via="token",
                        person=item.get("person", ""),
                    ),
                    str(item["sha256"]),
                    int(item["created_at"]),
                )
                for item in data["tokens"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"token file {path} is damaged: {exc}") from exc
        return cls(entries)

    def save(self, path: Path) -> None:
        """Write the book to *path* atomically, readable by its owner only."""
        data = {
            "version": _VERSION,
            "tokens": [
                {
                    "name": e.principal.name,
                    "role": e.principal.role.value,
                    "operator_id": e.principal.operator_id,
                    "person": e.principal.person,
                    "sha256": e.sha256,
                    "created_at": e.created_at,
                }
                for e in self.entries
            ],
        }
        write_private(path, json.dumps(data, indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Replace *path* with *text* at once (a 0600 file written whole, synced, renamed over
    it), so a reader never sees half a file; :class:`OutputError` if it cannot be written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"cannot write {path}: {exc.strerror}") from exc
