"""A realistic sample alert: for `test-notify`, the template benchmark and the tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kube_event_watcher.pipeline.model import Alert, ObjectRef, Occurrence, stable_id

SAMPLE_LOG_TAIL = (
    "2026-11-20T08:00:01Z INFO  starting payments-api v1.42.0\n"
    "2026-11-20T08:00:02Z INFO  connecting to postgres at db.payments.svc:5432\n"
    "2026-11-20T08:00:07Z ERROR connection refused (retry 5/5)\n"
    "2026-11-20T08:00:07Z FATAL cannot start without a database; exiting with code 1\n"
)


def sample_alert(now: float, **overrides: Any) -> Alert:
    """A firing BackOff alert for a Pod of a Deployment, with enrichment facts and a log tail.

    `overrides` replace any Alert field (e.g. status="resolved", note=..., facts=...).
    """
    regarding = ObjectRef(
        kind="Pod",
        namespace="payments",
        name="payments-api-7c9d8b6f5-x2x4q",
        uid="0b6f2a3e-5b1c-4f7e-9a55-2f0c1d7e8a90",
        api_version="v1",
        field_path="spec.containers{api}",
    )
    occurrence = Occurrence(
        cluster="sample-cluster",
        uid="5a1e0f3c-0d7b-4b7a-8f12-3c9e5d2a7b61",
        name="payments-api-7c9d8b6f5-x2x4q.17a9c2f0e3b4d5a6",
        namespace="payments",
        resource_version="123456",
        type="Warning",
        reason="BackOff",
        note="Back-off restarting failed container api in pod payments-api-7c9d8b6f5-x2x4q",
        action="Restarting",
        regarding=regarding,
        reporting_controller="kubelet",
        reporting_instance="node-a-3",
        count=1,
        total=7,
        first_seen=now - 420,
        last_seen=now,
    )
    alert = Alert(
        key=stable_id("sample-cluster", regarding.uid, "BackOff"),
        notification_id=stable_id("sample", str(int(now))),
        status="firing",
        cluster="sample-cluster",
        namespace="payments",
        regarding=regarding,
        reason="BackOff",
        type="Warning",
        note=occurrence.note,
        count=7,
        first_seen=now - 420,
        last_seen=now,
        occurrences=(occurrence,),
        facts={
            "owner": {"kind": "Deployment", "name": "payments-api"},
            "node": "node-a-3",
            "restarts": 6,
            "last_exit_code": 1,
            "log_tail": SAMPLE_LOG_TAIL,
        },
    )
    return replace(alert, **overrides) if overrides else alert
