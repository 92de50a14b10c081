"""What authenticates callers right now: the bearer tokens and the certificate deny-list.

One :class:`Trust` per server process is shared by every face that authenticates (gRPC,
N5g-eir, the web page); reloading it (a file watch or SIGHUP, :mod:`ceir.server.reload`)
swaps the token book or the deny-list in place, so every face refuses a revoked token or
certificate from its next request on.

The deny-list (``ceir serve --cert-deny FILE``, written by ``ceir certs revoke``) names
revoked client certificates, one a line, by SHA-256 fingerprint of the DER certificate or
by serial number (hexadecimal, as ``openssl x509 -serial`` prints it); ``#`` starts a
comment::

    sha256:5D:1A:...:9F   # telkomsel.pem, CN=telkomsel
    serial:3B0F7A...

Certificates are verified against the client CA by TLS first; a denied one is refused
whatever else the call carries (a bearer token does not rescue it).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ceir.errors import CeirError, ConfigError
from ceir.security.tokens import TokenBook, write_private

__all__ = ["CertDenyList", "RevokedError", "Trust", "deny_entry", "describe_certificate"]

SHA256 = "sha256:"
SERIAL = "serial:"
_HEX = re.compile(r"[0-9a-f]+")
_CACHE = 1024


class RevokedError(CeirError):
    """The caller's client certificate is on the deny-list."""


REVOKED = "client certificate revoked"
"""What a refused caller with a denied certificate is told, on every face."""


def _hex(value: str) -> str:
    """*value* as lower-case hex without ``:``, spaces or a ``0x`` prefix."""
    return value.strip().lower().replace(":", "").replace(" ", "").removeprefix("0x")


def _parse_entry(text: str, where: str) -> tuple[str, str]:
    """``("sha256", hex)`` or ``("serial", hex)`` for one deny-list entry."""
    low = text.strip().lower()
    for prefix in (SHA256, SERIAL):
        if low.startswith(prefix):
            value = _hex(low.removeprefix(prefix))
            if not value or not _HEX.fullmatch(value):
                raise ConfigError(f"{where}: {text.strip()!r} is not hexadecimal after {prefix}")
            if prefix == SHA256 and len(value) != 64:
                raise ConfigError(
                    f"{where}: a SHA-256 fingerprint has 64 hex digits, not {len(value)}"
                )
            if prefix == SERIAL:
                value = value.lstrip("0") or "0"
                if len(value) > 42:
                    raise ConfigError(f"{where}: a serial number has at most 20 bytes")
            return prefix.rstrip(":"), value
    raise ConfigError(
        f"{where}: {text.strip()[:80]!r} is neither sha256:FINGERPRINT nor serial:HEX"
    )


def _identify(pem: bytes) -> tuple[str, str]:
    """The SHA-256 fingerprint and the serial (hex) of a PEM certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(pem)
    # fingerprint() hashes the DER encoding, as `openssl x509 -fingerprint -sha256` does
    return cert.fingerprint(hashes.SHA256()).hex(), format(cert.serial_number, "x")


@dataclass
class CertDenyList:
    """Revoked client certificates, by fingerprint or serial."""

    fingerprints: frozenset[str] = frozenset()
    serials: frozenset[str] = frozenset()
    _seen: OrderedDict[bytes, bool] = field(default_factory=OrderedDict, repr=False)

    def __len__(self) -> int:
        return len(self.fingerprints) + len(self.serials)

    def denies(self, pem: bytes) -> bool:
        """Whether the PEM certificate is on the list (each certificate parsed once)."""
        if not self.fingerprints and not self.serials:
            return False
        seen = self._seen.get(pem)
        if seen is not None:
            return seen
        try:
            fingerprint, serial = _identify(pem)
        except ValueError:
            denied = True  # TLS verified it, yet it does not parse: refuse, do not guess
        else:
            denied = fingerprint in self.fingerprints or serial in self.serials
        self._seen[pem] = denied
        if len(self._seen) > _CACHE:
            self._seen.popitem(last=False)
        return denied

    @classmethod
    def parse(cls, text: str, name: str) -> CertDenyList:
        fingerprints: set[str] = set()
        serials: set[str] = set()
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            kind, value = _parse_entry(entry, f"{name} line {number}")
            (fingerprints if kind == "sha256" else serials).add(value)
        return cls(frozenset(fingerprints), frozenset(serials))

    @classmethod
    def load(cls, path: Path) -> CertDenyList:
        """Read a deny-list file (it must exist; empty: nobody is denied)."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the certificate deny-list {path}: {exc.strerror}; "
                "create it (it may be empty) or use `ceir certs revoke`"
            ) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"the certificate deny-list {path} is not UTF-8 text") from exc
        return cls.parse(text, str(path))


def describe_certificate(pem: bytes) -> str:
    """``CN=..., serial ...`` of a certificate, for a deny-list comment."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    return f"{cert.subject.rfc4514_string()}, serial {cert.serial_number:x}"


def deny_entry(given: str) -> tuple[str, str]:
    """The deny-list line for *given*: a PEM certificate file, or ``sha256:``/``serial:``
    text; and what it names (for the comment and the report)."""
    low = given.strip().lower()
    if low.startswith((SHA256, SERIAL)):
        kind, value = _parse_entry(given, "the argument")
        return f"{kind}:{value}", f"{kind} {value}"
    path = Path(given)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{given}: cannot read it ({exc.strerror}); give a PEM certificate, "
            "sha256:FINGERPRINT or serial:HEX"
        ) from exc
    try:
        fingerprint, _serial = _identify(pem)
        what = describe_certificate(pem)
    except ValueError as exc:
        raise ConfigError(f"{given} is not a PEM certificate") from exc
    return f"{SHA256}{fingerprint}", f"{path.name}: {what}"


def add_to_deny_list(path: Path, entries: list[tuple[str, str]]) -> int:
    """Append *entries* (line, comment) not yet in the file at *path*, atomically (a
    server watching it reads the whole new file or the old one); returns how many."""
    old = CertDenyList.load(path) if path.exists() else CertDenyList()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {("sha256", v) for v in old.fingerprints} | {("serial", v) for v in old.serials}
    added = 0
    for line, comment in entries:
        entry = _parse_entry(line, "entry")
        if entry in present:
            continue
        present.add(entry)
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"{line}  # {comment.replace(chr(10), ' ')}\n"
        added += 1
    write_private(path, text)
    return added


class Trust:
    """The token book and the certificate deny-list of one server process, shared by its
    faces and swapped in place on reload."""

    def __init__(
        self,
        tokens: TokenBook | None = None,
        denied: CertDenyList | None = None,
        *,
        tokens_path: Path | None = None,
        deny_path: Path | None = None,
    ) -> None:
        self.tokens = tokens
        """None: no token authentication configured (never becomes configured by reload)."""
        self.denied = denied or CertDenyList()
        self.tokens_path = tokens_path
        self.deny_path = deny_path

    @classmethod
    def load(cls, tokens_path: Path | None, deny_path: Path | None) -> Trust:
        """Read the configured files (a missing token file is an empty book)."""
        return cls(
            TokenBook.load(tokens_path) if tokens_path is not None else None,
            CertDenyList.load(deny_path) if deny_path is not None else None,
            tokens_path=tokens_path,
            deny_path=deny_path,
        )

    def revoked(self, pem: bytes) -> bool:
        """Whether the client certificate *pem* is denied."""
        return self.denied.denies(pem)

    def reload_tokens(self) -> str:
        """Read the token file again (ConfigError, and the old book stays, if it is bad)."""
        if self.tokens_path is None or self.tokens is None:
            raise ConfigError("the server was started without a token file")
        book = TokenBook.load(self.tokens_path)
        self.tokens = book
        return f"bearer tokens from {self.tokens_path}: {len(book)} token(s)"

    def reload_denied(self) -> str:
        """Read the deny-list again (ConfigError, and the old list stays, if it is bad)."""
        if self.deny_path is None:
            raise ConfigError("the server was started without a certificate deny-list")
        denied = CertDenyList.load(self.deny_path)
        self.denied = denied
        return f"certificate deny-list {self.deny_path}: {len(denied)} revoked"
