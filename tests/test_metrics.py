"""ceir.metrics: every status and reason is a label value, and a batch's tally is counted
as one increment per (status, reason)."""

from __future__ import annotations

import collections

from prometheus_client.parser import text_string_to_metric_families

from ceir import metrics
from ceir.record import Reason, Status


def _answers() -> collections.Counter[tuple[str, str, str]]:
    out: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == "ceir_answers_total":
                labels = sample.labels
                out[labels["face"], labels["status"], labels["reason"]] += int(sample.value)
    return out


def test_every_status_and_reason_is_counted_by_name() -> None:
    """Each Status x Reason (whatever reasons the register grows, DUPLICATE included) is
    counted under its enum names, through the wire-number path the faces use."""
    before = _answers()
    tally = collections.Counter({(int(s), int(r)): 2 for s in Status for r in Reason})
    metrics.answer_tally(metrics.Face.GRPC, tally)
    seen = _answers() - before
    assert seen == collections.Counter(
        {("grpc", s.name, r.name): 2 for s in Status for r in Reason}
    )
