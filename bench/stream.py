"""A realistic recorded watch stream, generated: mixed reasons, series updates, many objects."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import orjson

REASONS = [
    ("Warning", "BackOff", "Back-off restarting failed container {c} in pod {p}"),
    ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
    ("Warning", "FailedScheduling", "0/12 nodes are available: 12 Insufficient cpu."),
    ("Warning", "FailedMount", 'MountVolume.SetUp failed for volume "data": timed out'),
    ("Normal", "Pulled", 'Successfully pulled image "registry/app:1.2.3" in 1.2s'),
    ("Normal", "Scheduled", "Successfully assigned {ns}/{p} to node-7"),
    ("Warning", "Evicted", "The node was low on resource: memory."),
]


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def generate(lines: int, objects: int = 2000, seed: int = 7) -> list[bytes]:
    """`lines` watch lines: ~60 % new events, ~35 % series updates, ~5 % deletes.

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
    live: list[dict[str, object]] = []  # small: a bounded window of recent events
    out: list[bytes] = []
    rv = 1_000_000
    now = 1_800_000_000.0
    for _ in range(lines):
        rv += 1
        now += 0.01
        roll = rng.random()
        if live and roll < 0.35:
            index = rng.randrange(len(live))
            event = live[index]
            series = event.get("series") or {"count": 1}
            count = int(series["count"]) + 1  # type: ignore[index]
            event = {**event, "series": {"count": count, "lastObservedTime": _time(now)}}
            event["metadata"] = {**event["metadata"], "resourceVersion": str(rv)}  # type: ignore[dict-item]
            live[index] = event
            out.append(orjson.dumps({"type": "MODIFIED", "object": event}) + b"\n")
            continue
        if live and roll < 0.40:
            event = live.pop(rng.randrange(len(live)))
            out.append(orjson.dumps({"type": "DELETED", "object": event}) + b"\n")
            continue
        kind_type, reason, note = rng.choice(REASONS)
        namespace, pod, pod_uid = pods[rng.randrange(objects)]
        event = {
            "kind": "Event",
            "apiVersion": "events.k8s.io/v1",
            "metadata": {
                "name": f"{pod}.{rng.getrandbits(64):x}",
                "namespace": namespace,
                "uid": str(uuid.UUID(int=rng.getrandbits(128))),
                "resourceVersion": str(rv),
                "creationTimestamp": _time(now)[:19] + "Z",
                "managedFields": [
                    {"manager": "kubelet", "operation": "Update", "apiVersion": "v1"}
                ],
            },
            "eventTime": _time(now),
            "reportingController": "kubelet",
            "reportingInstance": f"kubelet-node-{rng.randrange(12)}",
            "action": "Sync",
            "reason": reason,
            "regarding": {
                "kind": "Pod",
                "namespace": namespace,
                "name": pod,
                "uid": pod_uid,
                "apiVersion": "v1",
                "resourceVersion": str(rv - 5),
                "fieldPath": "spec.containers{app}",
            },
            "note": note.format(c="app", p=pod, ns=namespace),
            "type": kind_type,
        }
        live.append(event)
        if len(live) > 4 * objects:
            del live[:objects]
        out.append(orjson.dumps({"type": "ADDED", "object": event}) + b"\n")
    return out
