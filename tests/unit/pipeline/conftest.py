"""Shared builders for pipeline tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from watcher.pipeline.model import Alert, ObjectRef, stable_id

AlertFactory = Callable[..., Alert]


def build_alert(
    *,
    cluster: str = "prod",
    namespace: str = "default",
    kind: str = "Pod",
    name: str = "api-1",
    reason: str = "BackOff",
    type: str = "Warning",
    status: str = "firing",
    note: str = "Back-off restarting failed container",
    labels: Mapping[str, str] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> Alert:
    """An alert with readable defaults; override only what a test is about."""
    regarding = ObjectRef(
        kind=kind,
        namespace=namespace if kind != "Node" else "",
        name=name,
        uid=f"uid-{kind}-{name}",
    )
    key = stable_id(cluster, regarding.uid, reason)
    return Alert(
        key=key,
        notification_id=stable_id(key, status),
        status=status,  # type: ignore[arg-type]
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


@pytest.fixture(scope="session")
def make_alert() -> AlertFactory:
    return build_alert
