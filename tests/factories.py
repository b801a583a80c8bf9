"""Builders for pipeline values used across tests (one helper per purpose)."""

from __future__ import annotations

from watcher.config.aggregation import AggregationConfig
from watcher.pipeline.model import ObjectRef, Occurrence

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


def aggregation(**overrides: object) -> AggregationConfig:
    """An aggregation config from YAML-like values, e.g. group={"wait": "0s"}."""
    return AggregationConfig.model_validate(overrides)
