"""``details``: what each channel registered for a device; shared fields stored once."""

from __future__ import annotations

import datetime
import hashlib
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ceir.store._view import SEP, unpack_fields
from ceir.store._view import View as _View

__all__ = ["Details"]

_U32 = struct.Struct(">I")
# A details value: as written, or _SHARED + a shape id + the last field, or _DAY + a
# shape id + the last field, a date, as 2 bytes; one that begins with one of these bytes
# (never text a feed accepts) is stored behind _RAW.
_RAW, _SHARED, _DAY = b"\x00", b"\x01", b"\x02"
_EPOCH = datetime.date(1970, 1, 1).toordinal()


def _raw(value: bytes) -> bytes:
    return _RAW + value if value[:1] in (_RAW, _SHARED, _DAY) else value


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

    __slots__ = ("_shapes",)

    def __init__(self, txn: Any, db: Any, shapes: Any) -> None:
        super().__init__(txn, db)
        self._shapes = _View(txn, shapes)

    @staticmethod
    def key(device: bytes, code: int) -> bytes:
        return device + bytes((code,))

    def _whole(self, stored: bytes) -> bytes:
        mark = stored[:1]
        if mark == _RAW:
            return stored[1:]
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
                self._txn.delete(key, db=self._db)
        self.put_sorted([(k, v) for k, v in pairs if v is not None], shared)

    def put_sorted(self, pairs: Sequence[tuple[bytes, bytes]], shared: bool = False) -> None:
        """(raw key, packed fields) pairs sorted by key (the bulk import); *shared* as
        in :meth:`put`."""
        if pairs:
            self._txn.cursor(self._db).putmulti(self._encoded(pairs, shared))

    def _encoded(self, pairs: Sequence[tuple[bytes, bytes]], shared: bool) -> list[Any]:
        if not shared:
            return [(k, _raw(v)) for k, v in pairs]
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
