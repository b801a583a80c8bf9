"""A realistic recorded watch stream, generated: mixed reasons, series updates, many objects.

The objects are shaped as the real kube-apiserver serves them on an events.k8s.io/v1 watch
(bench/real_events.json, recorded from v1.37.2 by bench/record_real_events.py; a unit test
checks the generated objects have the same fields in the same order): the kubelet's events
come from the legacy (core/v1) recorder, so they carry `deprecatedCount`/`deprecated*Timestamp`
and `eventTime: null`, and count up through `deprecatedCount`; the scheduler's come from the
events/v1 recorder and count up through `series`. Both carry `managedFields` with FieldsV1.

`generate(..., shape="lean")` gives the first, leaner stream (events/v1 only, no FieldsV1,
~820-byte lines) that the earlier figures in bench/RESULTS.md were measured on.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

Shape = Literal["apiserver", "lean"]

# (type, reason, note, recorder): "legacy" = the kubelet's core/v1 recorder,
# "v1" = the scheduler's events/v1 recorder.
REASONS = [
    (
        "Warning",
        "BackOff",
        "Back-off restarting failed container {c} in pod {p}_{ns}({u})",
        "legacy",
    ),
    (
        "Warning",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 503",
        "legacy",
    ),
    (
        "Warning",
        "FailedScheduling",
        "0/12 nodes are available: 12 Insufficient cpu. preemption: 0/12 nodes are"
        " available: 12 No preemption victims found for incoming pod.",
        "v1",
    ),
    (
        "Warning",
        "FailedMount",
        'MountVolume.SetUp failed for volume "data" : timed out waiting for the condition',
        "legacy",
    ),
    (
        "Normal",
        "Pulled",
        'Successfully pulled image "registry/app:1.2.3" in 1.2s (1.2s including waiting)',
        "legacy",
    ),
    ("Normal", "Scheduled", "Successfully assigned {ns}/{p} to node-7", "v1"),
    (
        "Warning",
        "Evicted",
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 92Mi.",
        "legacy",
    ),
]

_LEGACY_FIELDS = {
    "f:count": {},
    "f:firstTimestamp": {},
    "f:involvedObject": {},
    "f:lastTimestamp": {},
    "f:message": {},
    "f:reason": {},
    "f:reportingComponent": {},
    "f:reportingInstance": {},
    "f:source": {"f:component": {}, "f:host": {}},
    "f:type": {},
}
_V1_FIELDS = {
    "f:action": {},
    "f:eventTime": {},
    "f:note": {},
    "f:reason": {},
    "f:regarding": {},
    "f:reportingController": {},
    "f:reportingInstance": {},
    "f:type": {},
}
_V1_SERIES_FIELDS = dict(
    sorted({**_V1_FIELDS, "f:series": {".": {}, "f:count": {}, "f:lastObservedTime": {}}}.items())
)


def _micro(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _managed(manager: str, api_version: str, fields: dict[str, Any], epoch: float) -> list[Any]:
    return [
        {
            "manager": manager,
            "operation": "Update",
            "apiVersion": api_version,
            "time": _seconds(epoch),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
    ]


def _new_event(
    rng: random.Random, pod: tuple[str, str, str], rv: int, now: float, shape: Shape
) -> dict[str, Any]:
    namespace, name, pod_uid = pod
    kind_type, reason, note, recorder = rng.choice(REASONS)
    node = f"node-{rng.randrange(12)}"
    regarding = {
        "kind": "Pod",
        "namespace": namespace,
        "name": name,
        "uid": pod_uid,
        "apiVersion": "v1",
        "resourceVersion": str(rv - 5),
        "fieldPath": "spec.containers{app}",
    }
    meta: dict[str, Any] = {
        "name": f"{name}.{rng.getrandbits(64):x}",
        "namespace": namespace,
        "uid": str(uuid.UUID(int=rng.getrandbits(128))),
        "resourceVersion": str(rv),
        "creationTimestamp": _seconds(now),
    }
    text = note.format(c="app", p=name, ns=namespace, u=pod_uid)
    if shape == "lean":
        meta["managedFields"] = [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1"}]
        return {
            "kind": "Event",
            "apiVersion": "events.k8s.io/v1",
            "metadata": meta,
            "eventTime": _micro(now),
            "reportingController": "kubelet",
            "reportingInstance": f"kubelet-{node}",
            "action": "Sync",
            "reason": reason,
            "regarding": regarding,
            "note": text,
            "type": kind_type,
        }
    if recorder == "legacy":
        meta["managedFields"] = _managed("kubelet", "v1", _LEGACY_FIELDS, now)
        return {
            "metadata": meta,
            "eventTime": None,
            "reportingController": "kubelet",
            "reportingInstance": node,
            "reason": reason,
            "regarding": regarding,
            "note": text,
            "type": kind_type,
            "deprecatedSource": {"component": "kubelet", "host": node},
            "deprecatedFirstTimestamp": _seconds(now),
            "deprecatedLastTimestamp": _seconds(now),
            "deprecatedCount": 1,
        }
    meta["managedFields"] = _managed("kube-scheduler", "events.k8s.io/v1", _V1_FIELDS, now)
    del regarding["fieldPath"]
    return {
        "metadata": meta,
        "eventTime": _micro(now),
        "reportingController": "default-scheduler",
        "reportingInstance": f"default-scheduler-{node}",
        "action": "Scheduling",
        "reason": reason,
        "regarding": regarding,
        "note": text,
        "type": kind_type,
        "deprecatedSource": {},
        "deprecatedFirstTimestamp": None,
        "deprecatedLastTimestamp": None,
    }


def _counted_again(event: dict[str, Any], rv: int, now: float) -> dict[str, Any]:
    """The same event seen once more, as its recorder updates it."""
    meta = {**event["metadata"], "resourceVersion": str(rv)}
    if "deprecatedCount" in event:  # the legacy recorder: count and lastTimestamp
        meta["managedFields"] = _managed("kubelet", "v1", _LEGACY_FIELDS, now)
        return {
            **event,
            "metadata": meta,
            "deprecatedLastTimestamp": _seconds(now),
            "deprecatedCount": event["deprecatedCount"] + 1,
        }
    series = event.get("series") or {"count": 1}
    series = {"count": series["count"] + 1, "lastObservedTime": _micro(now)}
    if "deprecatedSource" not in event:  # the lean shape
        return {**event, "metadata": meta, "series": series}
    meta["managedFields"] = _managed("kube-scheduler", "events.k8s.io/v1", _V1_SERIES_FIELDS, now)
    if "series" not in event:  # first update: series after eventTime, as the API orders it
        fields = list(event.items())
        event = dict([*fields[:2], ("series", None), *fields[2:]])
    return {**event, "metadata": meta, "series": series}


def generate(
    lines: int, objects: int = 2000, seed: int = 7, shape: Shape = "apiserver"
) -> list[bytes]:
    """`lines` watch lines: ~60 % new events, ~35 % count updates, ~5 % deletes.

    Events are about `objects` Pods (each with a stable name and uid) of `objects // 10`
    Deployments in 40 namespaces, so dedup keys repeat and groups form as in a real storm.
    """
    rng = random.Random(seed)
    deployments = max(1, objects // 10)
    pods = [
        (
            f"team-{i % deployments % 40}",
            f"app-{i % deployments}-7d4b9c5f8-{i:05d}",
            str(uuid.UUID(int=rng.getrandbits(128))),
        )
        for i in range(objects)
    ]
    live: list[dict[str, Any]] = []  # small: a bounded window of recent events
    out: list[bytes] = []
    rv = 1_000_000
    now = 1_800_000_000.0
    for _ in range(lines):
        rv += 1
        now += 0.01
        roll = rng.random()
        if live and roll < 0.35:
            index = rng.randrange(len(live))
            live[index] = event = _counted_again(live[index], rv, now)
            out.append(orjson.dumps({"type": "MODIFIED", "object": event}) + b"\n")
            continue
        if live and roll < 0.40:
            event = live.pop(rng.randrange(len(live)))
            out.append(orjson.dumps({"type": "DELETED", "object": event}) + b"\n")
            continue
        event = _new_event(rng, pods[rng.randrange(objects)], rv, now, shape)
        live.append(event)
        if len(live) > 4 * objects:
            del live[:objects]
        out.append(orjson.dumps({"type": "ADDED", "object": event}) + b"\n")
    return out
