"""gRPC servicers: the operators' EquipmentIdentityRegister and the consumers' DeviceCheck.

Handlers keep the proto's PascalCase names. Domain errors are raised, not handled,
here; :mod:`ceir.server` translates them into gRPC status codes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from ceir.errors import LimitError
from ceir.imei import parse_lenient
from ceir.lookup import Checker
from ceir.policy import Decision, Policy
from ceir.record import Reason, Status
from ceir.store import Store
from ceir.v1 import device_check_pb2, device_check_pb2_grpc, eir_pb2

PACKED_KEY = 8


def _check_batch_size(n: int, limit: int) -> None:
    if n > limit:
        raise LimitError(f"batch holds {n} requests; at most {limit} are allowed per message")


class EquipmentIdentityRegister:
    """CheckIMEI for operator EIRs. Malformed IMEIs get BLACKLISTED / INVALID_IMEI.

    The batch and stream handlers return the serialized response (bytes), built in bulk
    by :meth:`Checker.check_batch`; register with :func:`add_eir_to_server`, which
    passes those bytes through unchanged.
    """

    def __init__(self, checker: Checker, max_batch: int) -> None:
        self.checker = checker
        self.max_batch = max_batch

    async def CheckIMEI(
        self, request: eir_pb2.CheckIMEIRequest, context: Any
    ) -> eir_pb2.CheckIMEIResponse:
        return self.checker.check_one(request)

    async def CheckIMEIBatch(self, request: eir_pb2.CheckIMEIBatchRequest, context: Any) -> bytes:
        _check_batch_size(len(request.requests), self.max_batch)
        return self.checker.check_batch(request.requests)

    async def CheckIMEIStream(
        self, request_iterator: AsyncIterator[eir_pb2.CheckIMEIBatchRequest], context: Any
    ) -> AsyncIterator[bytes]:
        async for message in request_iterator:
            _check_batch_size(len(message.requests), self.max_batch)
            yield self.checker.check_batch(message.requests)

    async def CheckPacked(
        self, request: eir_pb2.CheckPackedRequest, context: Any
    ) -> eir_pb2.CheckPackedResponse:
        keys = request.keys
        if len(keys) % PACKED_KEY:
            raise LimitError(f"keys is {len(keys)} bytes long; expected a multiple of 8")
        _check_batch_size(len(keys) // PACKED_KEY, self.max_batch)
        return eir_pb2.CheckPackedResponse(results=self.checker.check_packed(keys))


def add_eir_to_server(servicer: Any, server: Any) -> None:
    """Register EquipmentIdentityRegister on *server* (as the generated function does,
    except that batch and stream responses arrive already serialized)."""
    import grpc

    batch_in = eir_pb2.CheckIMEIBatchRequest.FromString
    handlers = {
        "CheckIMEI": grpc.unary_unary_rpc_method_handler(
            servicer.CheckIMEI,
            request_deserializer=eir_pb2.CheckIMEIRequest.FromString,
            response_serializer=eir_pb2.CheckIMEIResponse.SerializeToString,
        ),
        "CheckIMEIBatch": grpc.unary_unary_rpc_method_handler(
            servicer.CheckIMEIBatch, request_deserializer=batch_in
        ),
        "CheckIMEIStream": grpc.stream_stream_rpc_method_handler(
            servicer.CheckIMEIStream, request_deserializer=batch_in
        ),
        "CheckPacked": grpc.unary_unary_rpc_method_handler(
            servicer.CheckPacked,
            request_deserializer=eir_pb2.CheckPackedRequest.FromString,
            response_serializer=eir_pb2.CheckPackedResponse.SerializeToString,
        ),
    }
    name = eir_pb2.DESCRIPTOR.services_by_name["EquipmentIdentityRegister"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


_STATE = {
    Reason.REGISTERED: device_check_pb2.DEVICE_STATE_REGISTERED,
    Reason.GRANDFATHERED: device_check_pb2.DEVICE_STATE_REGISTERED,
    Reason.EXEMPT: device_check_pb2.DEVICE_STATE_REGISTERED,
    Reason.TEMPORARY: device_check_pb2.DEVICE_STATE_TEMPORARY,
    Reason.EXPIRED: device_check_pb2.DEVICE_STATE_EXPIRED,
    Reason.LOST_STOLEN: device_check_pb2.DEVICE_STATE_BLOCKED,
    Reason.NOT_REGISTERED: device_check_pb2.DEVICE_STATE_NOT_REGISTERED,
}


def _summary(decision: Decision) -> str:
    reason = decision.reason
    if reason is Reason.LOST_STOLEN:
        return "Blocked: this device has been reported lost or stolen and will not connect."
    if reason is Reason.EXPIRED:
        return "Expired: this device's temporary registration has ended; it will not connect."
    if reason is Reason.TEMPORARY:
        until = time.strftime("%Y-%m-%d", time.gmtime(decision.expires_at))
        return f"Temporarily registered until {until} (UTC); it can connect until then."
    if reason is Reason.NOT_REGISTERED:
        if decision.status is Status.BLACKLISTED:
            return "Not registered: this device will not get mobile service."
        return "Not registered: this device is not in the register."
    return "Registered: this device can be used on mobile networks."


class DeviceCheck(device_check_pb2_grpc.DeviceCheckServicer):
    """The consumer's IMEI check: plain answers, brand and model, nothing personal."""

    def __init__(self, store: Store, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    async def LookupDevice(
        self, request: device_check_pb2.LookupDeviceRequest, context: Any
    ) -> device_check_pb2.LookupDeviceResponse:
        imei = parse_lenient(request.imei)
        decision = self.policy.decide(self.store.get(imei.key), time.time())
        response = device_check_pb2.LookupDeviceResponse(
            imei=imei.canonical,
            tac=imei.tac,
            state=_STATE[decision.reason],
            summary=_summary(decision),
            allowed=decision.status is not Status.BLACKLISTED,
        )
        info = self.store.tac(imei.tac)
        if info is not None:
            response.brand = info.brand
            response.model = info.model
            response.device_type = info.device_type
        if decision.reason in (Reason.TEMPORARY, Reason.EXPIRED) and decision.expires_at:
            response.valid_until.seconds = decision.expires_at
        return response
