"""The lookup path: CheckIMEI requests in, CheckIMEI responses out. The hot core.

Per IMEI it does the minimum. :meth:`Checker.check_batch` answers a whole batch message
and returns the serialized ``CheckIMEIBatchResponse``:

- the common message (every IMEI plain 14, 15 or 16 ASCII digits of one length, no
  request ids) is handled column-wise, and the server hands it over still serialized
  (:func:`plain_imeis` reads the IMEIs out of the request's bytes, no message object per
  request): the Luhn check digits of all IMEIs come from 14 byte-column slices summed as
  big integers (the sum per IMEI is at most 126, so the base-256 "digits" never carry),
  the store keys from one numpy product, the records from one ``txn.get`` each, in key
  order, inside one read transaction;
- a response element is the precomputed bytes of its decision (status, reason, source
  and the field tags) plus the canonical IMEI and TAC bytes, encoded exactly as
  protobuf would (fields in number order); the records fall into a few decision classes
  (header and expiry bytes), each class's head is scattered into one output buffer with
  numpy, so no per-IMEI message object or Python loop builds the answer;
- everything else (request ids, mixed lengths, malformed or junk IMEIs, records with an
  expiry) goes through :func:`_element`, which builds the element with protobuf itself.

The answers are identical to :meth:`Checker.check_many`, which builds response messages
the ordinary way (the tests compare the two). Given a :data:`Tally`, the bulk path also
counts its answers by (status, reason): per distinct element head, not per IMEI, so
the metrics cost one ``Counter`` pass over the batch.

A device the clone detector flagged (a clone flag in its record, :mod:`ceir.clones`) is
answered GREYLISTED or BLACKLISTED / DUPLICATE — unless the request carries an ``imsi``
that is one of the device's pairs (*paired*, given by the site): then the answer is made
from the record without its clone flags. Only flagged devices pay for that extra read.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, itemgetter

import numpy as np

from ceir import imei as imei_mod
from ceir.errors import InvalidImeiError
from ceir.imei import Junk, check_digit
from ceir.lookup._columns import (
    _CLASS,
    _IS_ZERO,
    _MISSING,
    _POWERS,
    _RANGE,
    _TAIL,
    _TAIL_SVN,
    _splitter,
    _tails,
)
from ceir.lookup._columns import (
    check_digits as check_digits,
)
from ceir.lookup._columns import (
    plain_imeis as plain_imeis,
)
from ceir.policy import INVALID, Decision, Policy, without_clone
from ceir.record import FLAGS_CLONE, Reason, unpack_header
from ceir.store import Store
from ceir.v1 import eir_pb2

Response = eir_pb2.CheckIMEIResponse
Tally = collections.Counter[tuple[int, int]]
"""Answers counted by (status, reason) wire numbers."""
# The record's IntEnums are the proto numbers; the generated stubs want their own NewType.
_response: Callable[..., Response] = Response

_IMEI = attrgetter("imei")
_IMSI = attrgetter("imsi")
_REQUEST_ID = attrgetter("request_id")
_NO_EXPIRY = b"\x00\x00\x00\x00"
_HEADER = slice(0, 4)  # reason, source, flags, pad: the decision when there is no expiry
_EXPIRY = slice(8, 12)

# The bodies junk_flags marks without a test TAC: one digit repeated, counting sequences.
_JUNK_KEYS = frozenset(
    imei_mod.body_key(body)
    for body in (
        *(str(d) * 14 for d in range(10)),
        *("01234567890123456789"[i : i + 14] for i in range(7)),
        *("98765432109876543210"[i : i + 14] for i in range(7)),
    )
)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _element(response: Response) -> bytes:
    """One ``responses`` element of a serialized CheckIMEIBatchResponse."""
    data = response.SerializeToString()
    return b"\n" + _varint(len(data)) + data


def head_codes(head: bytes) -> tuple[int, int]:
    """The (status, reason) an element head built by :func:`_head` carries: its bytes are
    ``0A len 08 status 10 reason``, each a one-byte varint (an element is < 128 bytes)."""
    return head[3], head[5]


def _head(decision: Decision, tail: int) -> bytes:
    """The bytes of an element up to the IMEI's value, for a body of *tail* more bytes."""
    fields = bytearray((0x08, decision.status, 0x10, decision.reason))
    if decision.source:
        fields += bytes((0x18, decision.source))
    fields += b'"\x0f'  # field 4 (imei), 15 bytes
    return b"\n" + _varint(len(fields) + tail) + bytes(fields)


class Checker:
    """Answers CheckIMEI requests from a store under a policy."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        *,
        paired: Callable[[bytes, str], bool] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.paired = paired
        """``paired(device_key, imsi)``: whether the SIM is one of the device's pairs."""
        self._decisions: dict[bytes, Decision] = {}
        # Element heads by record header (records without expiry) for plain IMEIs,
        # without and with an SVN; result bytes of the packed form likewise.
        self._heads: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        self._unknown_heads = (_head(policy.unknown, _TAIL), _head(policy.unknown, _TAIL_SVN))
        self._codes: dict[bytes, int] = {}
        self._expiring: dict[bytes, tuple[int, tuple[bytes, bytes], tuple[bytes, bytes]]] = {}

    def _decide(self, value: bytes | None, now: float) -> Decision:
        if value is None:
            return self.policy.unknown
        cached = self._decisions.get(value)
        if cached is not None:
            return cached
        reason, source, flags, expires_at = unpack_header(value)
        decision = self.policy.decide_fields(reason, source, flags, expires_at, now)
        if not expires_at and len(self._decisions) < 4096:
            # Without an expiry the decision depends on the value alone.
            self._decisions[value] = decision
        return decision

    def _for_sim(self, key: bytes, value: bytes, imsi: str) -> bytes:
        """A flagged device's record as the SIM *imsi* sees it: without its clone flags
        when the SIM is one of its pairs."""
        if imsi and self.paired is not None and self.paired(key, imsi):
            return without_clone(value)
        return value

    def _for_sims(self, keys: list[bytes], values: list[bytes | None], imsis: list[str]) -> None:
        """:meth:`_for_sim` of every flagged record in *values*, in place."""
        for i, value in enumerate(values):
            if value is not None and value[2] & FLAGS_CLONE and imsis[i]:
                values[i] = self._for_sim(keys[i], value, imsis[i])

    def check_one(self, request: eir_pb2.CheckIMEIRequest) -> Response:
        """The answer to one request (the unary call: one message, no batch around it)."""
        with self.store.read() as reads:
            return self._answer(request.imei, request, reads.get, self.clock())

    def check_many(
        self, requests: Sequence[eir_pb2.CheckIMEIRequest]
    ) -> eir_pb2.CheckIMEIBatchResponse:
        """Answers for *requests*, in order, from one read transaction."""
        response = eir_pb2.CheckIMEIBatchResponse()
        self.check_into(response.responses, requests)
        return response

    def check_into(self, out: object, requests: Iterable[eir_pb2.CheckIMEIRequest]) -> None:
        """Append one response per request to the repeated field *out*."""
        add = out.add  # type: ignore[attr-defined]
        now = self.clock()
        decide = self._decide
        with self.store.read() as reads:
            get = reads.get
            for request in requests:
                text = request.imei
                n = len(text)
                if 14 <= n <= 16 and text.isascii() and text.isdigit():
                    body = text[:14]
                    cd = check_digit(body)
                    if n != 15 or ord(text[14]) - 48 == cd:
                        key = int(body).to_bytes(8, "big")
                        value = get(key)
                        if value is not None and value[2] & FLAGS_CLONE:
                            value = self._for_sim(key, value, request.imsi)
                        decision = decide(value, now)
                        r = add(
                            status=decision.status,
                            reason=decision.reason,
                            source=decision.source,
                            imei=body + chr(48 + cd),
                            tac=body[:8],
                            request_id=request.request_id,
                        )
                        if decision.expires_at:
                            r.expires_at.seconds = decision.expires_at
                        if n == 16:
                            r.svn = text[14:]
                        if imei_mod.junk_flags(body) is not Junk.NONE:
                            r.suspicious = True
                        continue
                add(
                    status=INVALID.status,
                    reason=Reason.INVALID_IMEI,
                    request_id=request.request_id,
                    detail=_problem(text),
                )

    # -- the bulk path -------------------------------------------------------------

    def check_batch(
        self, requests: Sequence[eir_pb2.CheckIMEIRequest], tally: Tally | None = None
    ) -> bytes:
        """The serialized CheckIMEIBatchResponse for *requests*: same answers as
        :meth:`check_many`, built without a message object per IMEI. With *tally*, the
        answers are added to it by (status, reason)."""
        texts = list(map(_IMEI, requests))
        count = len(texts)
        if not count or any(map(_REQUEST_ID, requests)):
            return b"".join(self._mixed(texts, requests, tally))
        joined = "".join(texts)
        width = len(joined) // count
        if (
            14 <= width <= 16
            and len(joined) == width * count
            and joined.isascii()
            and joined.isdigit()
            and set(map(len, texts)) == {width}
        ):
            raw = joined.encode()
            digits = check_digits(raw, width)
            if width != 15 or digits == raw[14::15]:
                imsis = self._imsis(requests)
                if imsis is None:
                    return self._plain_bytes(raw, width, digits, tally)
                return b"".join(self._plain(raw, width, digits, tally, imsis))
        return b"".join(self._split(texts, requests, tally))

    def _imsis(self, requests: Sequence[eir_pb2.CheckIMEIRequest]) -> list[str] | None:
        """The requests' IMSIs when a pair could change an answer (None: no IMSI given)."""
        if self.paired is None:
            return None
        imsis = list(map(_IMSI, requests))
        return imsis if any(imsis) else None

    def check_batch_bytes(self, data: bytes, tally: Tally | None = None) -> bytes | None:
        """The serialized response to the serialized request *data* when it is the
        common message (:func:`plain_imeis`, valid check digits); else None (parse it
        and call :meth:`check_batch`). With *tally*, as :meth:`check_batch`."""
        found = plain_imeis(data)
        if found is None:
            return None
        raw, width = found
        digits = check_digits(raw, width)
        if width == 15 and digits != raw[14::15]:
            return None
        return self._plain_bytes(raw, width, digits, tally)

    def _plain_bytes(
        self, raw: bytes, width: int, digits: bytes, tally: Tally | None = None
    ) -> bytes:
        """:meth:`_plain`'s elements joined, built column-wise with numpy: one head (and
        expires_at tail) per decision class, scattered into one buffer; tallied per class."""
        count = len(digits)
        bodies = np.frombuffer(raw, np.uint8).reshape(count, width)[:, :14] - 48
        numbers = bodies.astype(np.uint64) @ _POWERS
        split = _splitter(count).unpack
        keys = split(numbers.astype(">u8").tobytes())
        # Read in key order (~20% cheaper than random at 20 M devices), then unsort.
        order = np.argsort(numbers, kind="stable")
        back = np.empty(count, np.intp)
        back[order] = np.arange(count)
        now = self.clock()
        with self.store.read() as reads:
            found = list(map(reads.get, split(numbers[order].astype(">u8").tobytes())))
        values = [found[0]] if count == 1 else list(itemgetter(*back.tolist())(found))
        records = np.frombuffer(b"".join([v or _MISSING for v in values]), np.uint8)
        classes = np.ascontiguousarray(records.reshape(count, 12)[:, _CLASS]).view(np.uint64)
        _, first, inverse = np.unique(classes.ravel(), True, True)
        svn = width == 16
        size = _TAIL_SVN if svn else _TAIL
        special = np.zeros(count, bool)
        special[list(self._suspects(raw, width, keys))] = True
        heads, extras = [], []
        for u, at in enumerate(first.tolist()):
            head, extra = self._pieces(values[at], now, svn)
            if not head:  # an expiry with an SVN: the general path
                special |= inverse == u
            heads.append(head)
            extras.append(extra)
        head_len = np.array([len(h) for h in heads])[inverse]
        lengths = head_len + size + np.array([len(e) for e in extras])[inverse]
        rest = {
            i: self._special(raw, i * width + 14, width, digits[i], values[i], now)
            for i in np.flatnonzero(special).tolist()
        }
        for i, element in rest.items():
            lengths[i] = len(element)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        out = np.empty(int(ends[-1]), np.uint8)
        rows = np.flatnonzero(~special)
        tails = np.frombuffer(_tails(raw, width, digits), np.uint8).reshape(count, size)
        out[(starts[rows] + head_len[rows])[:, None] + _RANGE[:size]] = tails[rows]
        for u, (head, extra) in enumerate(zip(heads, extras, strict=True)):
            mine = rows[inverse[rows] == u]
            if head and len(mine):
                out[starts[mine][:, None] + _RANGE[: len(head)]] = np.frombuffer(head, np.uint8)
                if extra:
                    at = starts[mine] + len(head) + size
                    out[at[:, None] + _RANGE[: len(extra)]] = np.frombuffer(extra, np.uint8)
        for i, element in rest.items():
            out[starts[i] : ends[i]] = np.frombuffer(element, np.uint8)
        if tally is not None:
            for u, n in enumerate(np.bincount(inverse[rows], minlength=len(heads)).tolist()):
                if n:
                    tally[head_codes(heads[u])] += n
            for i in rest:
                decision = self._decide(values[i], now)
                tally[decision.status, decision.reason] += 1
        return out.tobytes()

    def _pieces(self, value: bytes | None, now: float, svn: bool) -> tuple[bytes, bytes]:
        """An element's bytes before and after its tail for a record (None: unknown)."""
        if value is None:
            return self._unknown_heads[svn], b""
        if value[_EXPIRY] == _NO_EXPIRY:
            return self._heads[svn].get(value[_HEADER]) or self._head_for(value, now, svn), b""
        if svn:
            return b"", b""
        key = value[_HEADER] + value[_EXPIRY]
        entry = self._expiring.get(key) or self._expiring_for(key, value)
        return entry[1] if now < entry[0] else entry[2]

    def _split(
        self,
        texts: list[str],
        requests: Sequence[eir_pb2.CheckIMEIRequest],
        tally: Tally | None,
    ) -> list[bytes]:
        """A batch of mostly plain IMEIs of one width and a few others (malformed, bad
        check digit, another width): the plain ones in bulk, the others one by one."""
        width = collections.Counter(map(len, texts)).most_common(1)[0][0]
        if not 14 <= width <= 16:
            return self._mixed(texts, requests, tally)
        plain = [i for i, t in enumerate(texts) if len(t) == width and t.isascii() and t.isdigit()]
        raw = "".join([texts[i] for i in plain]).encode()
        digits = check_digits(raw, width)
        if width == 15 and digits != raw[14::15]:
            plain = [i for k, i in enumerate(plain) if digits[k] == raw[15 * k + 14]]
            raw = "".join([texts[i] for i in plain]).encode()
            digits = check_digits(raw, width)
        elements = [b""] * len(texts)
        imsis = self._imsis(requests)
        if imsis is not None:
            imsis = [imsis[i] for i in plain]
        for i, element in zip(plain, self._plain(raw, width, digits, tally, imsis), strict=True):
            elements[i] = element
        rest = [i for i, element in enumerate(elements) if not element]
        others = self._mixed([texts[i] for i in rest], [requests[i] for i in rest], tally)
        for i, element in zip(rest, others, strict=True):
            elements[i] = element
        return elements

    def _plain(
        self,
        raw: bytes,
        width: int,
        digits: bytes,
        tally: Tally | None = None,
        imsis: list[str] | None = None,
    ) -> list[bytes]:
        """Elements for IMEIs of one *width*, laid out in *raw*, all valid, no ids
        (*imsis*: their requests' IMSIs, when any was given)."""
        ends = range(14, len(raw) + 14, width)  # end of each body in raw
        keys = [int(raw[end - 14 : end]).to_bytes(8, "big") for end in ends]
        now = self.clock()
        with self.store.read() as reads:
            values: list[bytes | None] = list(map(reads.get, keys))
        if imsis is not None:
            self._for_sims(keys, values, imsis)
        special = self._suspects(raw, width, keys)
        svn = width == 16
        heads = self._heads[svn]
        unknown = self._unknown_heads[svn]
        tails = _tails(raw, width, digits)
        size = _TAIL_SVN if svn else _TAIL
        elements = []
        used: list[bytes] = []  # the head of each element built from one (for the tally)
        singles: list[Decision] = []  # the decisions of the others
        at = 0
        for i, value in enumerate(values):
            if value is None:
                head = unknown
            elif value[_EXPIRY] == _NO_EXPIRY:
                head = heads.get(value[_HEADER]) or self._head_for(value, now, svn)
            elif not svn and i not in special:
                # An expiry: the answer flips when it passes, and carries expires_at
                # after the TAC (before an SVN, hence not for IMEISVs).
                key = value[_HEADER] + value[_EXPIRY]
                entry = self._expiring.get(key) or self._expiring_for(key, value)
                head, extra = entry[1] if now < entry[0] else entry[2]
                used.append(head)
                elements.append(head + tails[at : at + size] + extra)
                at += size
                continue
            else:
                head = b""
            if not head or i in special:
                end = i * width + 14
                elements.append(self._special(raw, end, width, digits[i], value, now))
                singles.append(self._decide(value, now))
            else:
                used.append(head)
                elements.append(head + tails[at : at + size])
            at += size
        if tally is not None:
            for head, n in collections.Counter(used).items():
                tally[head_codes(head)] += n
            for decision in singles:
                tally[decision.status, decision.reason] += 1
        return elements

    def _expiring_for(
        self, key: bytes, value: bytes
    ) -> tuple[int, tuple[bytes, bytes], tuple[bytes, bytes]]:
        """Head and trailing expires_at field of a record with an expiry, before and
        from its expiry on (the policy decides both now; the clock picks one later)."""
        reason, source, flags, expires_at = unpack_header(value)
        sides = []
        for moment in (expires_at - 1, expires_at):
            decision = self.policy.decide_fields(reason, source, flags, expires_at, moment)
            extra = b""
            if decision.expires_at:
                stamp = b"\x08" + _varint(decision.expires_at)
                extra = b"B" + _varint(len(stamp)) + stamp  # field 8 (expires_at)
            sides.append((_head(decision, _TAIL + len(extra)), extra))
        entry = (expires_at, sides[0], sides[1])
        if len(self._expiring) < 4096:
            self._expiring[key] = entry
        return entry

    def _head_for(self, value: bytes, now: float, svn: bool) -> bytes:
        head = _head(self._decide(value, now), _TAIL_SVN if svn else _TAIL)
        if len(self._heads[svn]) < 4096:
            self._heads[svn][value[_HEADER]] = head
        return head

    @staticmethod
    def _suspects(raw: bytes, width: int, keys: Sequence[bytes]) -> set[int]:
        """Positions of IMEIs that may be junk: a repeated or counting body, or a TAC
        starting ``00`` (where the test TACs are). :func:`junk_flags` decides later."""
        special: set[int] = set()
        if not _JUNK_KEYS.isdisjoint(keys):
            special.update(i for i, key in enumerate(keys) if key in _JUNK_KEYS)
        zeros = raw[0::width].translate(_IS_ZERO)
        both = int.from_bytes(zeros, "big") & int.from_bytes(
            raw[1::width].translate(_IS_ZERO), "big"
        )
        if both:
            flags = both.to_bytes(len(zeros), "big")
            special.update(i for i, flag in enumerate(flags) if flag)
        return special

    def _special(
        self, raw: bytes, end: int, width: int, digit: int, value: bytes | None, now: float
    ) -> bytes:
        body = raw[end - 14 : end].decode()
        decision = self._decide(value, now)
        response = _response(
            status=decision.status,
            reason=decision.reason,
            source=decision.source,
            imei=body + chr(digit),
            tac=body[:8],
        )
        if decision.expires_at:
            response.expires_at.seconds = decision.expires_at
        if width == 16:
            response.svn = raw[end : end + 2].decode()
        if imei_mod.junk_flags(body) is not Junk.NONE:
            response.suspicious = True
        return _element(response)

    def _mixed(
        self,
        texts: list[str],
        requests: Sequence[eir_pb2.CheckIMEIRequest],
        tally: Tally | None = None,
    ) -> list[bytes]:
        """Elements for any batch: one protobuf element per IMEI (the general path)."""
        now = self.clock()
        with self.store.read() as reads:
            get = reads.get
            answers = [
                self._answer(text, request, get, now)
                for text, request in zip(texts, requests, strict=True)
            ]
        if tally is not None:
            tally.update((r.status, r.reason) for r in answers)
        return list(map(_element, answers))

    def _answer(
        self,
        text: str,
        request: eir_pb2.CheckIMEIRequest,
        get: Callable[[bytes], bytes | None],
        now: float,
    ) -> Response:
        """The response to one request whose IMEI is *text*, records read with *get*."""
        n = len(text)
        if 14 <= n <= 16 and text.isascii() and text.isdigit():
            body = text[:14]
            cd = check_digit(body)
            if n != 15 or ord(text[14]) - 48 == cd:
                key = int(body).to_bytes(8, "big")
                value = get(key)
                if value is not None and value[2] & FLAGS_CLONE:
                    value = self._for_sim(key, value, request.imsi)
                decision = self._decide(value, now)
                r = _response(
                    status=decision.status,
                    reason=decision.reason,
                    source=decision.source,
                    imei=body + chr(48 + cd),
                    tac=body[:8],
                    request_id=request.request_id,
                )
                if decision.expires_at:
                    r.expires_at.seconds = decision.expires_at
                if n == 16:
                    r.svn = text[14:]
                if imei_mod.junk_flags(body) is not Junk.NONE:
                    r.suspicious = True
                return r
        return _response(
            status=INVALID.status,
            reason=Reason.INVALID_IMEI,
            request_id=request.request_id,
            detail=_problem(text),
        )

    # -- the packed form -------------------------------------------------------------

    def check_packed(self, keys: bytes) -> bytes:
        """One result byte, ``(reason << 2) | status``, per 8-byte key in *keys* (its
        length a multiple of 8): records read in key order, one decision per class."""
        count = len(keys) // 8
        if not count:
            return b""
        numbers = np.frombuffer(keys, ">u8", count)
        order = np.argsort(numbers, kind="stable")
        now = self.clock()
        with self.store.read() as reads:
            found = list(map(reads.get, _splitter(count).unpack(numbers[order].tobytes())))
        records = np.frombuffer(b"".join([v or _MISSING for v in found]), np.uint8)
        classes = np.ascontiguousarray(records.reshape(count, 12)[:, _CLASS]).view(np.uint64)
        _, first, inverse = np.unique(classes.ravel(), True, True)
        codes = np.array([self._code(found[at], now) for at in first.tolist()], np.uint8)
        out = np.empty(count, np.uint8)
        out[order] = codes[inverse]
        invalid = numbers > imei_mod.MAX_BODY  # never stored: no 14-digit body
        out[invalid] = (Reason.INVALID_IMEI << 2) | INVALID.status
        return out.tobytes()

    def _code(self, value: bytes | None, now: float) -> int:
        """The packed form's result byte for a record (None: unknown)."""
        if value is not None and value[_EXPIRY] == _NO_EXPIRY:
            code = self._codes.get(value[_HEADER])
            if code is not None:
                return code
        decision = self._decide(value, now)
        code = (decision.reason << 2) | decision.status
        if value is not None and value[_EXPIRY] == _NO_EXPIRY and len(self._codes) < 4096:
            self._codes[value[_HEADER]] = code
        return code


def _problem(text: str) -> str:
    try:
        imei_mod.parse(text)
    except InvalidImeiError as exc:
        return exc.message
    return "invalid IMEI"  # pragma: no cover - parse and the fast path agree
