"""Builders for pipeline values used across tests (one helper per purpose): occurrences,
alerts and aggregation configs. The production sample alert (`test-notify`, doctor) is
kube_event_watcher/notifiers/sample.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube_event_watcher.config.aggregation import AggregationConfig
from kube_event_watcher.pipeline.model import Alert, AlertStatus, ObjectRef, Occurrence, stable_id

T0 = 1_800_000_000.0


def occurrence(
    name: str = "web-7d4b9c5f8-x2k9p",
    *,
    reason: str = "BackOff",
    kind: str = "Pod",
    namespace: str = "shop",
    cluster: str = "prod",
    uid: str | None = None,
    event_uid: str | None = None,
    count: int = 1,
    total: int | None = None,
    at: float = T0,
    type: str = "Warning",
    note: str = "Back-off restarting failed container",
) -> Occurrence:
    """One occurrence about `kind/namespace/name`; its event uid and times default sensibly."""
    return Occurrence(
        cluster=cluster,
        uid=event_uid or f"ev-{name}-{reason}",
        name=f"{name}.{reason.lower()}",
        namespace=namespace,
        resource_version="1",
        type=type,
        reason=reason,
        note=note,
        action="",
        regarding=ObjectRef(kind=kind, namespace=namespace, name=name, uid=uid or f"uid-{name}"),
        reporting_controller="kubelet",
        reporting_instance="node-1",
        count=count,
        total=total if total is not None else count,
        first_seen=at,
        last_seen=at,
    )


def make_alert(
    kind: str = "Pod",
    name: str = "api-1",
    namespace: str = "default",
    *,
    cluster: str = "prod",
    reason: str = "BackOff",
    type: str = "Warning",
    status: AlertStatus = "firing",
    note: str = "Back-off restarting failed container",
    api_version: str = "",
    field_path: str = "",
    notification_id: str | None = None,
    labels: Mapping[str, str] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Alert:
    """An alert about one object, as aggregation hands it on; override only what a test is
    about. A Node is cluster-scoped, so its alert has no namespace."""
    regarding = ObjectRef(
        kind=kind,
        namespace=namespace if kind != "Node" else "",
        name=name,
        uid=f"uid-{kind}-{name}",
        api_version=api_version,
        field_path=field_path,
    )
    key = stable_id(cluster, regarding.uid, reason)
    return Alert(
        key=key,
        notification_id=notification_id or stable_id(key, status),
        status=status,
        cluster=cluster,
        namespace=regarding.namespace,
        regarding=regarding,
        reason=reason,
        type=type,
        note=note,
        count=1,
        first_seen=0.0,
        last_seen=0.0,
        labels=dict(labels or {}),
        facts=dict(facts or {}),
    )


def numbered_alert(
    i: int, *, cluster: str = "prod", reason: str = "BackOff", note: str | None = None
) -> Alert:
    """The i-th of many distinct alerts (Pod payments/api-<i>), each built from its own
    occurrence as a single event would be, i seconds after T0."""
    return Alert.from_occurrence(
        occurrence(
            f"api-{i}",
            reason=reason,
            namespace="payments",
            cluster=cluster,
            uid=f"uid-{i}",
            event_uid=f"event-{i}",
            at=T0 + i,
            note=note if note is not None else f"Back-off restarting failed container (#{i})",
        )
    )


def aggregation(**overrides: object) -> AggregationConfig:
    """An aggregation config from YAML-like values, e.g. group={"wait": "0s"}."""
    return AggregationConfig.model_validate(overrides)
