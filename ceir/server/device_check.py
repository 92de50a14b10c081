"""The DeviceCheck servicer: the consumer's IMEI check.

Handlers keep the proto's PascalCase names. Domain errors are raised, not handled,
here; :mod:`ceir.server.app.app` translates them into gRPC status codes.
"""

from __future__ import annotations

import time
from typing import Any

from ceir import metrics
from ceir.imei import parse_lenient
from ceir.policy import Decision, Policy
from ceir.record import Reason, Status
from ceir.store import Store
from ceir.v1 import device_check_pb2, device_check_pb2_grpc

_STATE = {
    Reason.REGISTERED: device_check_pb2.DEVICE_STATE_REGISTERED,
    Reason.GRANDFATHERED: device_check_pb2.DEVICE_STATE_REGISTERED,
    Reason.EXEMPT: device_check_pb2.DEVICE_STATE_REGISTERED,
    Reason.TEMPORARY: device_check_pb2.DEVICE_STATE_TEMPORARY,
    Reason.EXPIRED: device_check_pb2.DEVICE_STATE_EXPIRED,
    Reason.LOST_STOLEN: device_check_pb2.DEVICE_STATE_BLOCKED,
    Reason.NOT_REGISTERED: device_check_pb2.DEVICE_STATE_NOT_REGISTERED,
    Reason.DUPLICATE: device_check_pb2.DEVICE_STATE_SUSPECTED_CLONE,
}


_SUMMARY = {
    Reason.LOST_STOLEN: "Blocked: this device has been reported lost or stolen and will not "
    "connect.",
    Reason.DUPLICATE: "Suspected clone: this IMEI was seen on several SIMs at once; only "
    "its owner's SIM is sure to keep working.",
}


def _summary(decision: Decision) -> str:
    reason = decision.reason
    if reason in _SUMMARY:
        return _SUMMARY[reason]
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

    def __init__(
        self, store: Store, policy: Policy, *, face: metrics.Face = metrics.Face.DEVICE_CHECK
    ) -> None:
        self.store = store
        self.policy = policy
        self.face = face
        """Whose answers the metrics count (the web page asks through this servicer too)."""

    async def LookupDevice(
        self, request: device_check_pb2.LookupDeviceRequest, context: Any
    ) -> device_check_pb2.LookupDeviceResponse:
        imei = parse_lenient(request.imei)
        decision = self.policy.decide(self.store.get(imei.key), time.time())
        metrics.answer(self.face, decision.status, decision.reason)
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
