"""The lookup path: CheckIMEI requests in, CheckIMEI responses out. The hot core.

Per IMEI it does the minimum: a fast parse for plain digit strings, one ``get`` in a
read transaction shared by the whole message, and a decision cached per distinct
record value (only records with an expiry are decided afresh, against the clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ceir import imei as imei_mod
from ceir.errors import InvalidImeiError
from ceir.imei import Junk, check_digit
from ceir.policy import INVALID, Decision, Policy
from ceir.record import Reason, unpack_header
from ceir.store import Store
from ceir.v1 import eir_pb2

Response = eir_pb2.CheckIMEIResponse


class Checker:
    """Answers CheckIMEI requests from a store under a policy."""

    def __init__(
        self, store: Store, policy: Policy, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self._decisions: dict[bytes, Decision] = {}

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

    def check_one(self, request: eir_pb2.CheckIMEIRequest) -> Response:
        """The answer to one request."""
        response = eir_pb2.CheckIMEIBatchResponse()
        self.check_into(response.responses, (request,))
        return response.responses[0]

    def check_many(
        self, requests: Sequence[eir_pb2.CheckIMEIRequest]
    ) -> eir_pb2.CheckIMEIBatchResponse:
        """Answers for *requests*, in order, from one read transaction."""
        response = eir_pb2.CheckIMEIBatchResponse()
        self.check_into(response.responses, requests)
        return response

    def check_into(self, out: object, requests: Sequence[eir_pb2.CheckIMEIRequest]) -> None:
        """Append one response per request to the repeated field *out*."""
        add = out.add  # type: ignore[attr-defined]
        now = self.clock()
        decide = self._decide
        with self.store.read() as txn:
            get = txn.get
            for request in requests:
                text = request.imei
                n = len(text)
                if 14 <= n <= 16 and text.isascii() and text.isdigit():
                    body = text[:14]
                    cd = check_digit(body)
                    if n != 15 or ord(text[14]) - 48 == cd:
                        decision = decide(get(int(body).to_bytes(8, "big")), now)
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

    def check_packed(self, keys: bytes) -> bytes:
        """One result byte, ``(reason << 2) | status``, per 8-byte key in *keys*."""
        now = self.clock()
        decide = self._decide
        invalid = (Reason.INVALID_IMEI << 2) | INVALID.status
        out = bytearray()
        append = out.append
        with self.store.read() as txn:
            get = txn.get
            for i in range(0, len(keys), 8):
                key = keys[i : i + 8]
                if key > _MAX_KEY:
                    append(invalid)
                    continue
                decision = decide(get(key), now)
                append((decision.reason << 2) | decision.status)
        return bytes(out)


_MAX_KEY = imei_mod.MAX_BODY.to_bytes(8, "big")


def _problem(text: str) -> str:
    try:
        imei_mod.parse(text)
    except InvalidImeiError as exc:
        return exc.message
    return "invalid IMEI"  # pragma: no cover - parse and the fast path agree
