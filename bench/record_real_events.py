"""Record how the real kube-apiserver serves Events on events.k8s.io/v1, for bench/stream.py.

Creates, on the control plane of tests/e2e/controlplane (build.sh first), what a kubelet
does (a core/v1 Event through the legacy recorder, then its count update) and what the
scheduler does (an events.k8s.io/v1 Event, then a series update), each with its field
manager, and writes the objects as listed back to bench/real_events.json:

    .venv/bin/python -m bench.record_real_events
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from tests.e2e.controlplane.cluster import ControlPlane, find_binaries

OUT = Path(__file__).resolve().parent / "real_events.json"
NAMESPACE = "team-1"
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "namespace": NAMESPACE,
    "name": "app-7d4b9c5f8-x2k1p",
    "uid": "5f0c7a8e-2b1d-4c3e-9f6a-1b2c3d4e5f60",
    "resourceVersion": "4242",
}


def _now(micro: bool = False) -> str:
    return dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    )


def _create_then_update(
    cp: ControlPlane, collection: str, body: dict[str, Any], manager: str, update: dict[str, Any]
) -> None:
    params = {"fieldManager": manager}
    created = cp.request("POST", collection, body, params=params).json()
    created.update(update)
    path = f"{collection}/{created['metadata']['name']}"
    cp.request("PUT", path, created, params=params)


def main() -> None:
    with ControlPlane(find_binaries()) as cp:
        cp.create_namespace(NAMESPACE)
        kubelet = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "app-7d4b9c5f8-x2k1p.17a9b3c2d1e0f4a5", "namespace": NAMESPACE},
            "involvedObject": {**POD, "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container app in pod "
            f"app-7d4b9c5f8-x2k1p_{NAMESPACE}({POD['uid']})",
            "source": {"component": "kubelet", "host": "node-7"},
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
            "count": 1,
            "type": "Warning",
            "eventTime": None,
            "reportingComponent": "kubelet",
            "reportingInstance": "node-7",
        }
        _create_then_update(
            cp,
            f"/api/v1/namespaces/{NAMESPACE}/events",
            kubelet,
            "kubelet",
            {"count": 2, "lastTimestamp": _now()},
        )
        scheduler = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "app-7d4b9c5f8-x2k1p.17a9b3c2d1e0f4b6", "namespace": NAMESPACE},
            "eventTime": _now(micro=True),
            "reportingController": "default-scheduler",
            "reportingInstance": "default-scheduler-node-1",
            "action": "Scheduling",
            "reason": "FailedScheduling",
            "regarding": POD,
            "note": "0/12 nodes are available: 12 Insufficient cpu.",
            "type": "Warning",
        }
        _create_then_update(
            cp,
            f"/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events",
            scheduler,
            "kube-scheduler",
            {"series": {"count": 2, "lastObservedTime": _now(micro=True)}},
        )
        listed = cp.get(f"/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events")
        OUT.write_text(json.dumps(listed["items"], indent=1) + "\n")
        print(f"{len(listed['items'])} events written to {OUT}")


if __name__ == "__main__":
    main()
