"""``details``: what each channel registered for a device; shared fields stored once.

A device's creation keeps its audit entry here, at the end of the value it wrote
(:meth:`Details.put_created`): the entry's 6-byte sequence number and its 5-byte value
(line, flags: :mod:`ceir.store.audit`), so a new device costs one node in the registry,
not two. Whatever replaces or deletes that value first moves the entry into ``audit``
under its own number (:meth:`Details.put`), so no entry is ever lost and the batch's
digest is unchanged; :class:`ceir.store.audittables.AuditLog` reads both tables.
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ceir.store._view import SEP, TOKEN_BYTES, put_ascending, unpack_fields
from ceir.store._view import View as _View

__all__ = ["ENTRY_BYTES", "Details", "encode", "entry_of", "token_values"]

_U32 = struct.Struct(">I")
# A details value: as written, or _SHARED + a shape id + the last field, or _DAY + a
# shape id + the last field, a date, as 2 bytes, or _TOKENS + a head byte + the leading
# identity tokens as 16 bytes each + the other fields (see encode); one that begins with
# a control byte (never text a feed accepts) is stored behind _RAW. With _ENTRY set in
# the first byte, the value ends with an audit entry: its number and its value.
_RAW, _SHARED, _DAY, _TOKENS = b"\x00", b"\x01", b"\x02", b"\x03"
_ENTRY = 0x10
_SEQ_BYTES, ENTRY_BYTES = 6, 5
_SUFFIX = _SEQ_BYTES + ENTRY_BYTES
_MARKED = tuple(bytes((b | _ENTRY,)) for b in range(0x20))
"""A stored value's first byte (a control byte) with _ENTRY set."""
_EPOCH = datetime.date(1970, 1, 1).toordinal()
_SEPB = SEP.encode()
# The head byte after _TOKENS: how many leading fields are tokens (at most _MAX_TOKENS),
# and whether other fields follow as text (_TAIL) or one follows, a date, in 2 bytes.
_MAX_TOKENS, _TAIL, _TAIL_DAY = 0x3F, 0x40, 0x80
_TOKEN_TEXT = re.compile(rb"tok_[0-9a-f]{32}")


def _raw(value: bytes) -> bytes:
    return _RAW + value if value and value[0] < 0x20 else value


def entry_of(stored: bytes) -> tuple[int, bytes] | None:
    """(sequence number, audit value) of the entry a stored details value carries, or None."""
    if not stored or not stored[0] & _ENTRY or stored[0] >= 0x20:
        return None
    tail = stored[-_SUFFIX:]
    return int.from_bytes(tail[:_SEQ_BYTES], "big"), tail[_SEQ_BYTES:]


def _with_entry(encoded: bytes, suffix: bytes) -> bytes:
    """*encoded* (a stored value without an entry) carrying an entry (:meth:`Details.suffix`)."""
    if encoded and encoded[0] < 0x20:
        return _MARKED[encoded[0]] + encoded[1:] + suffix
    return _MARKED[0] + encoded + suffix  # text: behind _RAW


def encode(value: bytes) -> bytes:
    """A details value as it is stored when its fields are not shared: leading identity
    tokens (``tok_`` + 32 hex digits, 36 bytes of text) as their 16 bytes, and a date
    after them (``YYYY-MM-DD``) in 2 — an operator dump's 84 bytes in 36."""
    if value[:4] != b"tok_":
        return _raw(value)
    fields = value.split(_SEPB)
    n = 0
    while n < min(len(fields), _MAX_TOKENS) and _TOKEN_TEXT.fullmatch(fields[n]):
        n += 1
    if not n:
        return _raw(value)
    tokens = bytes.fromhex(b"".join(f[4:] for f in fields[:n]).decode())
    if n == len(fields):
        return _TOKENS + bytes((n,)) + tokens
    rest = _SEPB.join(fields[n:])
    day = _day_bytes(rest) if n == len(fields) - 1 else None
    if day is not None:
        return _TOKENS + bytes((n | _TAIL_DAY,)) + tokens + day
    return _TOKENS + bytes((n | _TAIL,)) + tokens + rest


def token_values(tokens: npt.NDArray[np.uint8], days: npt.NDArray[np.int64]) -> list[bytes]:
    """:func:`encode` of many values of leading tokens and a date, from arrays (the bulk
    import): *tokens* ``(n, k, 16)``, *days* the dates as days since 1970 (each in
    ``0 .. 65535``). Equal to ``encode`` of the text values, without making them."""
    n, k = tokens.shape[:2]
    if not 0 < k <= _MAX_TOKENS or tokens.shape[2:] != (TOKEN_BYTES,):
        raise ValueError(f"tokens must be (n, 1..{_MAX_TOKENS}, {TOKEN_BYTES}): {tokens.shape}")
    if n and not (int(days.min()) >= 0 and int(days.max()) < 1 << 16):
        raise ValueError("a day is outside 1970-01-01 .. 2149-06-06")
    rows = np.empty(
        n, [("mark", "u1"), ("head", "u1"), ("tokens", "u1", (k * TOKEN_BYTES,)), ("day", ">u2")]
    )
    rows["mark"], rows["head"] = _TOKENS[0], k | _TAIL_DAY
    rows["tokens"] = tokens.reshape(n, k * TOKEN_BYTES)
    rows["day"] = days
    raw, size = rows.tobytes(), rows.itemsize
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def _tokens_text(stored: bytes) -> bytes:
    head = stored[1]
    n, end = head & _MAX_TOKENS, 2 + (head & _MAX_TOKENS) * TOKEN_BYTES
    raw = stored[2:end].hex().encode()
    fields = [
        b"tok_" + raw[i : i + 2 * TOKEN_BYTES]
        for i in range(0, 2 * n * TOKEN_BYTES, 2 * TOKEN_BYTES)
    ]
    if head & _TAIL_DAY:
        fields.append(_day_text(stored[end:]))
    elif head & _TAIL:
        fields.append(stored[end:])
    return _SEPB.join(fields)


def _day_bytes(text: bytes) -> bytes | None:
    """A date written ``YYYY-MM-DD`` as 2 bytes (days since 1970), or None when *text*
    is not one that reads back the same."""
    if len(text) != 10:
        return None
    try:
        day = datetime.date.fromisoformat(text.decode()).toordinal() - _EPOCH
    except (ValueError, UnicodeDecodeError):
        return None
    if not 0 <= day < 1 << 16:
        return None
    raw = day.to_bytes(2, "big")
    return raw if _day_text(raw) == text else None


def _day_text(raw: bytes) -> bytes:
    return datetime.date.fromordinal(_EPOCH + int.from_bytes(raw, "big")).isoformat().encode()


class Details(_View):
    """``details``: what each channel registered for a device, by feed-kind code.

    When the writer says so (*shared*), a value's fields but the last, which many devices
    share (a manufacturer row's brand, model, TPP and maker), are stored once in
    ``shapes`` and referred to by a 4-byte id; per device only the last field is stored
    (a ``YYYY-MM-DD`` date in 2 bytes).
    Readers see the whole value either way.
    """

    __slots__ = ("_audit", "_shapes")

    def __init__(self, txn: Any, db: Any, shapes: Any, audit: Any = None) -> None:
        super().__init__(txn, db)
        self._shapes = _View(txn, shapes)
        self._audit = audit

    @staticmethod
    def key(device: bytes, code: int) -> bytes:
        return device + bytes((code,))

    def _whole(self, stored: bytes) -> bytes:
        if entry_of(stored) is not None:
            stored = bytes((stored[0] & ~_ENTRY,)) + stored[1:-_SUFFIX]
        mark = stored[:1]
        if mark == _RAW:
            return stored[1:]
        if mark == _TOKENS:
            return _tokens_text(stored)
        if mark not in (_SHARED, _DAY):
            return stored
        shape = self._shapes._get(b"#" + stored[1:5])
        if shape is None:  # pragma: no cover - shapes are never deleted
            raise KeyError(f"details refer to a missing shape {stored[1:5].hex()}")
        last = _day_text(stored[5:7]) if mark == _DAY else stored[5:]
        return shape + SEP.encode() + last

    def get(self, device: bytes, code: int) -> bytes | None:
        """The packed fields (:func:`pack_fields`) channel *code* registered, or None."""
        value = self._get(self.key(device, code))
        return None if value is None else self._whole(value)

    def of_device(self, device: bytes) -> Iterator[tuple[int, list[str]]]:
        """(feed-kind code, fields) of every channel that registered *device*."""
        for key, value in self._items(device, device):
            yield key[len(device)], unpack_fields(self._whole(value))

    def items(self) -> Iterator[tuple[bytes, int, list[str]]]:
        """(device key, feed-kind code, fields) of every entry, in key order."""
        for key, value in self._items():
            yield key[:-1], key[-1], unpack_fields(self._whole(value))

    def put(self, items: Mapping[tuple[bytes, int], bytes | None], shared: bool = False) -> None:
        """Packed fields by (device, code); None deletes the entry. *shared*: every field
        but the last is stored once (see the class)."""
        pairs = sorted((self.key(device, code), v) for (device, code), v in items.items())
        for key, value in pairs:
            if value is None:
                self._keep_entry(key)
                self._txn.delete(key, db=self._db)
        self.put_sorted([(k, v) for k, v in pairs if v is not None], shared)

    def put_sorted(
        self, pairs: Sequence[tuple[bytes, bytes]], shared: bool = False, *, encoded: bool = False
    ) -> None:
        """(raw key, packed fields) pairs sorted by key (the bulk import); *shared* as
        in :meth:`put`; *encoded*: the values are as stored already (:func:`encode`,
        :func:`token_values`; not for *shared*). A value they replace gives its entry to
        ``audit`` first."""
        for key, _value in pairs:
            self._keep_entry(key)
        if pairs:
            values = pairs if encoded and not shared else self._encoded(pairs, shared)
            put_ascending(self._txn, self._db, values)

    @staticmethod
    def suffix(seq: int, entry: bytes) -> bytes:
        """What a value keeps of the audit entry *seq* (its value *entry*: 5 bytes)."""
        if len(entry) != ENTRY_BYTES or not 0 < seq < 1 << (8 * _SEQ_BYTES):
            raise ValueError(f"audit entry {seq} cannot be kept in details")
        return seq.to_bytes(_SEQ_BYTES, "big") + entry

    @staticmethod
    def suffixes(seqs: npt.NDArray[Any], entries: bytes) -> list[bytes]:
        """:meth:`suffix` of many entries: numbers (an array), values joined."""
        n = len(seqs)
        if n and not 0 < int(seqs.min()) <= int(seqs.max()) < 1 << (8 * _SEQ_BYTES):
            raise ValueError("audit entries out of range cannot be kept in details")
        out = np.empty((n, _SUFFIX), np.uint8)
        seq = seqs.astype(">u8").view(np.uint8).reshape(n, 8)
        out[:, :_SEQ_BYTES] = seq[:, 8 - _SEQ_BYTES :]
        out[:, _SEQ_BYTES:] = np.frombuffer(entries, np.uint8).reshape(n, ENTRY_BYTES)
        raw = out.tobytes()
        return [raw[i : i + _SUFFIX] for i in range(0, n * _SUFFIX, _SUFFIX)]

    def put_created(
        self,
        pairs: Sequence[tuple[bytes, bytes]],
        suffixes: Sequence[bytes],
        shared: bool = False,
        *,
        encoded: bool = False,
    ) -> None:
        """(raw key, packed fields) pairs sorted by key, each keeping the audit entry of
        the change that created it (*suffixes*: :meth:`suffix`; see the module
        docstring); *shared*, *encoded* as in :meth:`put_sorted`. Keys above the table's
        last are appended (pages filled)."""
        if not pairs:
            return
        values = pairs if encoded and not shared else self._encoded(pairs, shared)
        rows = [(k, _with_entry(v, s)) for (k, v), s in zip(values, suffixes, strict=True)]
        last = self._last_key()
        cut = 0 if last is None else bisect.bisect_right(rows, last, key=lambda kv: kv[0])
        cursor = self._txn.cursor(self._db)
        if cut < len(rows):
            cursor.putmulti(rows[cut:] if cut else rows, append=True)
        if not cut:
            return
        below = rows[:cut]
        consumed, added = cursor.putmulti(below, overwrite=False)
        if added == consumed:
            return
        for key, value in below:  # some were there before: keep their entries, then replace
            if self._get(key) != value:
                self._keep_entry(key)
                self._txn.put(key, value, db=self._db)

    def _keep_entry(self, key: bytes) -> None:
        """Move the entry the value under *key* carries (if any) into ``audit``."""
        stored = self._get(key)
        found = None if stored is None else entry_of(stored)
        if found is not None:
            seq, entry = found
            self._txn.put(key[:-1] + seq.to_bytes(8, "big"), entry, db=self._audit)

    def _encoded(self, pairs: Sequence[tuple[bytes, bytes]], shared: bool) -> list[Any]:
        if not shared:
            return [(k, encode(v)) for k, v in pairs]
        sep, ids, lasts, out = SEP.encode(), dict[bytes, bytes](), dict[bytes, bytes](), []
        for k, v in pairs:
            cut = v.rfind(sep)
            if cut < 0:  # one field: nothing to share
                out.append((k, _raw(v)))
                continue
            prefix, last = v[:cut], v[cut + 1 :]
            ref = ids.get(prefix)
            if ref is None:
                ref = ids[prefix] = self._shape_id(prefix)
            tail = lasts.get(last)
            if tail is None:
                day = _day_bytes(last)
                tail = lasts[last] = _SHARED + last if day is None else _DAY + day
            out.append((k, tail[:1] + ref + tail[1:]))
        return out

    def _shape_id(self, prefix: bytes) -> bytes:
        """The 4-byte id of *prefix* in ``shapes``, added if new."""
        name = b"=" + hashlib.sha256(prefix).digest()[:16]
        found = self._shapes._get(name)
        if found is not None:
            return found
        cursor = self._txn.cursor(self._shapes._db)  # the last id: the key before "="
        found = cursor.prev() if cursor.set_range(b"=") else cursor.last()
        key = bytes(cursor.key()) if found else b""
        ref = _U32.pack(_U32.unpack(key[1:5])[0] + 1 if key[:1] == b"#" else 1)
        self._txn.put(b"#" + ref, prefix, db=self._shapes._db)
        self._txn.put(name, ref, db=self._shapes._db)
        return ref
