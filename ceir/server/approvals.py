"""The ``Approvals`` gRPC service: the second person of the two-person rule.

Handlers keep the proto's PascalCase names. Who may call them is in
:data:`ceir.server.access.METHOD_RULES` (ministry and admin); :mod:`ceir.feeds.staging` checks again
that the approver is not the submitter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ceir import metrics
from ceir.feeds import eligibility, staging
from ceir.security.principals import current
from ceir.server.registry import FEED_KINDS
from ceir.store import Store
from ceir.v1 import approval_pb2, approval_pb2_grpc


def stage_message(stage: staging.Stage) -> approval_pb2.Stage:
    message = approval_pb2.Stage(
        id=stage.id,
        kind=FEED_KINDS[stage.kind],
        file=stage.file,
        digest=stage.digest,
        staged_by=stage.staged_by,
        rows=stage.rows,
        new_devices=stage.new_devices,
        changes=stage.changes,
        options=[approval_pb2.StageOption(name=n, value=v) for n, v in stage.option_texts()],
        columns=stage.columns,
        sample=[approval_pb2.SampleRow(line=line, values=values) for line, values in stage.sample],
        why=stage.why,
    )
    message.created_at.seconds = stage.created_at
    message.expires_at.seconds = stage.expires_at
    return message


def eligibility_message(rules: eligibility.Eligibility) -> approval_pb2.Eligibility:
    message = approval_pb2.Eligibility(
        visitor_max_days=rules.visitor_max_days,
        customs_quota=rules.customs_quota,
        customs_cooldown_days=rules.customs_cooldown_days,
        late_grandfathering_days=rules.late_grandfathering_days,
        set_by=rules.set_by,
    )
    message.cutoff.seconds = rules.cutoff
    if rules.set_at:
        message.set_at.seconds = rules.set_at
    return message


class Approvals(approval_pb2_grpc.ApprovalsServicer):
    """List, approve and reject staged bulk imports."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def ListStages(
        self, request: approval_pb2.ListStagesRequest, context: Any
    ) -> approval_pb2.ListStagesResponse:
        stages = staging.list_stages(self.store)
        return approval_pb2.ListStagesResponse(stages=[stage_message(s) for s in stages])

    async def ApproveStage(
        self, request: approval_pb2.StageRequest, context: Any
    ) -> approval_pb2.ApproveStageResponse:
        # The import may take a while: off the event loop, so lookups go on meanwhile.
        stage, summary = await asyncio.to_thread(
            staging.approve, self.store, request.id, current(), digest=request.digest
        )
        metrics.approval(metrics.Decision.APPROVED)
        metrics.imported(
            summary.kind,
            metrics.ImportResult.IMPORTED,
            accepted=summary.added + summary.changed + summary.unchanged,
            rejected=summary.rejected,
        )
        return approval_pb2.ApproveStageResponse(
            stage=stage_message(stage),
            import_id=summary.origin,
            added=summary.added,
            changed=summary.changed,
            rejected=summary.rejected_total,
        )

    async def RejectStage(
        self, request: approval_pb2.StageRequest, context: Any
    ) -> approval_pb2.RejectStageResponse:
        stage = await asyncio.to_thread(staging.reject, self.store, request.id, current())
        metrics.approval(metrics.Decision.REJECTED)
        return approval_pb2.RejectStageResponse(stage=stage_message(stage))

    async def GetEligibility(
        self, request: approval_pb2.GetEligibilityRequest, context: Any
    ) -> approval_pb2.Eligibility:
        return eligibility_message(eligibility.read(self.store))

    async def SetEligibility(
        self, request: approval_pb2.SetEligibilityRequest, context: Any
    ) -> approval_pb2.Eligibility:
        changes = {
            name: int(getattr(request, name))
            for name in (
                "visitor_max_days",
                "customs_quota",
                "customs_cooldown_days",
                "late_grandfathering_days",
            )
            if request.HasField(name)
        }
        if request.HasField("cutoff"):
            changes["cutoff"] = int(request.cutoff.seconds)
        actor = current().label
        rules = await asyncio.to_thread(eligibility.set_rules, self.store, actor, changes)
        return eligibility_message(rules)
