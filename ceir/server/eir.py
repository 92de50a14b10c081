"""The EquipmentIdentityRegister servicer: CheckIMEI for operators' EIRs.

Handlers keep the proto's PascalCase names. Domain errors are raised, not handled,
here; :mod:`ceir.server.app` translates them into gRPC status codes.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Sequence
from operator import attrgetter
from typing import Any

from google.protobuf.message import DecodeError

from ceir import metrics
from ceir.errors import InvalidRequestError, LimitError
from ceir.lookup import Checker, Tally, plain_imeis
from ceir.security.principals import current
from ceir.sightings import BatchObserver, Observer, sightings_of
from ceir.v1 import eir_pb2

PACKED_KEY = 8
_GRPC = metrics.Face.GRPC
_IMSI = attrgetter("imsi")


def _check_batch_size(n: int, limit: int) -> None:
    if n > limit:
        raise LimitError(f"batch holds {n} requests; at most {limit} are allowed per message")


class EquipmentIdentityRegister:
    """CheckIMEI for operator EIRs. Malformed IMEIs get BLACKLISTED / INVALID_IMEI.

    The batch and stream handlers return the serialized response (bytes), built in bulk
    by :meth:`Checker.check_batch`; register with :func:`add_eir_to_server`, which
    passes those bytes through unchanged.
    """

    def __init__(
        self,
        checker: Checker,
        max_batch: int,
        *,
        observe: Observer | None = None,
        observe_batch: BatchObserver | None = None,
    ) -> None:
        self.checker = checker
        self.max_batch = max_batch
        self.observe = observe
        self.observe_batch = observe_batch

    def _sightings(
        self, requests: Sequence[eir_pb2.CheckIMEIRequest], data: bytes | None = None
    ) -> None:
        """Each request's ``imsi`` (when given, with a valid IMEI) to the observation seam,
        like N5g-eir's ``supi`` and S13's ``User-Name``: a batch as its serialized bytes
        *data* in one call when the observer takes batches (the recorder parses them, in
        its own process)."""
        if self.observe is None or not any(map(_IMSI, requests)):
            return
        operator = current().operator_id
        if self.observe_batch is not None and data is not None:
            self.observe_batch(data, operator)
            return
        for key, sim in sightings_of(requests):
            self.observe(key, sim, operator)

    async def CheckIMEI(
        self, request: eir_pb2.CheckIMEIRequest, context: Any
    ) -> eir_pb2.CheckIMEIResponse:
        response = self.checker.check_one(request)
        metrics.answer_code(_GRPC, response.status, response.reason)
        if request.imsi and self.observe is not None and response.imei:
            # A valid IMEI's answer carries its 15 digits: the key without parsing it again.
            key = int(response.imei[:14]).to_bytes(8, "big")
            self.observe(key, request.imsi, current().operator_id)
        return response

    def _batch(self, method: str, request: bytes | eir_pb2.CheckIMEIBatchRequest) -> bytes:
        """One batch or stream message's answer, given serialized (as the server hands it
        over: the common message, IMEIs only, is answered without parsing it into a
        message per request, :meth:`Checker.check_batch_bytes`) or parsed; its devices
        counted per method, and its answers by status and reason (the bulk path's tally)."""
        tally: Tally | None = collections.Counter() if metrics.enabled() else None
        data: bytes | None = None
        if isinstance(request, bytes):
            data = request
            found = plain_imeis(request)
            if found is not None:  # no IMSI in it: nothing to observe
                count = len(found[0]) // found[1]
                _check_batch_size(count, self.max_batch)
                answer = self.checker.check_batch_bytes(request, tally)
                if answer is not None:
                    _count(method, count, tally)
                    return answer
            try:
                request = eir_pb2.CheckIMEIBatchRequest.FromString(request)
            except DecodeError as exc:
                raise InvalidRequestError("the message is not a CheckIMEIBatchRequest") from exc
        requests = request.requests
        _check_batch_size(len(requests), self.max_batch)
        if data is None and self.observe_batch is not None:
            data = request.SerializeToString()
        self._sightings(requests, data)
        answer = self.checker.check_batch(requests, tally)
        _count(method, len(requests), tally)
        return answer

    async def CheckIMEIBatch(
        self, request: bytes | eir_pb2.CheckIMEIBatchRequest, context: Any
    ) -> bytes:
        return self._batch("CheckIMEIBatch", request)

    async def CheckIMEIStream(
        self,
        request_iterator: AsyncIterator[bytes | eir_pb2.CheckIMEIBatchRequest],
        context: Any,
    ) -> AsyncIterator[bytes]:
        async for message in request_iterator:
            yield self._batch("CheckIMEIStream", message)

    async def CheckPacked(
        self, request: eir_pb2.CheckPackedRequest, context: Any
    ) -> eir_pb2.CheckPackedResponse:
        keys = request.keys
        if len(keys) % PACKED_KEY:
            raise LimitError(f"keys is {len(keys)} bytes long; expected a multiple of 8")
        _check_batch_size(len(keys) // PACKED_KEY, self.max_batch)
        results = self.checker.check_packed(keys)
        metrics.answer_packed(_GRPC, results)
        return eir_pb2.CheckPackedResponse(results=results)


def _count(method: str, devices: int, tally: Tally | None) -> None:
    """A batch message's devices and answers to the metrics (when they are on)."""
    if tally is not None:
        metrics.batch_devices(_GRPC, method, devices)
        metrics.answer_tally(_GRPC, tally)


def add_eir_to_server(servicer: Any, server: Any) -> None:
    """Register EquipmentIdentityRegister on *server* (as the generated function does,
    except that batch and stream messages are handed over serialized, both ways)."""
    import grpc

    handlers = {
        "CheckIMEI": grpc.unary_unary_rpc_method_handler(
            servicer.CheckIMEI,
            request_deserializer=eir_pb2.CheckIMEIRequest.FromString,
            response_serializer=eir_pb2.CheckIMEIResponse.SerializeToString,
        ),
        "CheckIMEIBatch": grpc.unary_unary_rpc_method_handler(servicer.CheckIMEIBatch),
        "CheckIMEIStream": grpc.stream_stream_rpc_method_handler(servicer.CheckIMEIStream),
        "CheckPacked": grpc.unary_unary_rpc_method_handler(
            servicer.CheckPacked,
            request_deserializer=eir_pb2.CheckPackedRequest.FromString,
            response_serializer=eir_pb2.CheckPackedResponse.SerializeToString,
        ),
    }
    name = eir_pb2.DESCRIPTOR.services_by_name["EquipmentIdentityRegister"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
