"""Memory of the watch-backed Pod cache at scale: bytes a Pod, the way the daemon fills it.

Builds N realistic Pods (Deployments of 20-200 replicas over 40 namespaces and 500 nodes;
one to three containers with env, probes, resources and mounts; managedFields, labels and
annotations as a cluster has them; ~3% crash-looping, ~1% failing to pull) and serves them
as list pages of 500, as the API server does. Each page goes through the daemon's own path
(kube.wire list decoding → kube.objects.decode_pod → pod_from_wire → ObjectStore.put) and
is then dropped, so what stays is what the cache holds. Reported: the cache's bytes a Pod
by tracemalloc (the store's allocations alive after the list, the pages freed), the RSS
growth of the process, the JSON bytes a Pod it read, and the decode rate. Not a test:
figures go to bench/RESULTS.md (tests/unit/test_bench_smoke.py runs it with a tiny N).

    .venv/bin/python -m bench.bench_object_cache --pods 100000
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from kube_event_watcher.config.detectors import DetectorsConfig
from kube_event_watcher.kube.objects import Interner, ObjectStore, decode_pod, pod_from_wire
from kube_event_watcher.kube.wire import decode_list_page
from kube_event_watcher.pipeline.detect import Detector
from kube_event_watcher.pipeline.enrich import PodFacts
from kube_event_watcher.pipeline.ledger import SeenLedger

PAGE = 500
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _suffix(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_SAFE) for _ in range(n))


def _container_spec(name: str, image: str, i: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "ports": [{"containerPort": 8080 + i, "protocol": "TCP", "name": "http"}],
        "env": [{"name": f"ENV_{k}", "value": f"value-{k}-{name}"} for k in range(8)],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080 + i, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app"},
            {
                "name": "kube-api-access",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _container_status(
    name: str, image: str, rng: random.Random, trouble: str, pod: str, ns: str, uid: str
) -> dict[str, Any]:
    cid = "containerd://" + uuid.UUID(int=rng.getrandbits(128)).hex * 2
    status: dict[str, Any] = {
        "name": name,
        "image": image,
        "imageID": image.split(":")[0] + "@sha256:" + uuid.UUID(int=rng.getrandbits(128)).hex * 2,
        "containerID": cid,
        "ready": trouble == "",
        "started": trouble == "",
        "restartCount": 0,
        "state": {"running": {"startedAt": "2027-01-15T01:58:03Z"}},
        "lastState": {},
    }
    if trouble == "crash":
        status["restartCount"] = rng.randint(1, 40)
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": (
                    f"back-off 5m0s restarting failed container={name} pod={pod}_{ns}({uid})"
                ),
            }
        }
        status["lastState"] = {
            "terminated": {
                "exitCode": rng.choice([1, 2, 137]),
                "reason": "Error",
                "startedAt": "2027-01-15T02:09:40Z",
                "finishedAt": "2027-01-15T02:09:41Z",
                "containerID": cid,
            }
        }
    elif trouble == "pull":
        status["state"] = {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}": not found',
            }
        }
    return status


def pod(rng: random.Random, ns: str, app: str, rs: str, node: str, n_containers: int) -> bytes:
    name = f"{rs}-{_suffix(rng, 5)}"
    uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    names = ["app", "sidecar", "metrics"][:n_containers]
    images = [f"registry.example.com/{ns}/{app}-{c}:1.{len(app) % 9}.3" for c in names]
    roll = rng.random()
    trouble = "crash" if roll < 0.03 else "pull" if roll < 0.04 else ""
    obj = {
        "metadata": {
            "name": name,
            "generateName": f"{rs}-",
            "namespace": ns,
            "uid": uid,
            "resourceVersion": str(rng.randint(10**6, 10**8)),
            "creationTimestamp": "2027-01-14T08:00:00Z",
            "labels": {
                "app": app,
                "app.kubernetes.io/name": app,
                "app.kubernetes.io/part-of": ns,
                "pod-template-hash": rs.rsplit("-", 1)[1],
                "team": f"team-{len(ns) % 7}",
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": "2027-01-10T00:00:00Z",
                "prometheus.io/scrape": "true",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs,
                    "uid": str(uuid.UUID(int=rng.getrandbits(128))),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2027-01-14T08:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {}},
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2027-01-15T02:10:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}}},
                    "subresource": "status",
                },
            ],
        },
        "spec": {
            "containers": [
                _container_spec(c, i, k) for k, (c, i) in enumerate(zip(names, images, strict=True))
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
                {"name": "kube-api-access", "projected": {"sources": [], "defaultMode": 420}},
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": app,
            "nodeName": node,
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "False" if trouble and t.endswith("Ready") else "True"}
                | ({"reason": "ContainersNotReady"} if trouble and t.endswith("Ready") else {})
                | {"lastProbeTime": None, "lastTransitionTime": "2027-01-15T02:10:00Z"}
                for t in (
                    "PodReadyToStartContainers",
                    "Initialized",
                    "Ready",
                    "ContainersReady",
                    "PodScheduled",
                )
            ],
            "hostIP": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "podIP": f"10.244.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "startTime": "2027-01-15T01:58:00Z",
            "containerStatuses": [
                _container_status(c, i, rng, trouble if k == 0 else "", name, ns, uid)
                for k, (c, i) in enumerate(zip(names, images, strict=True))
            ],
            "qosClass": "Burstable",
        },
    }
    return orjson.dumps(obj)


def pages(n: int, seed: int = 7) -> Iterator[bytes]:
    """N Pods as list pages of PAGE, generated lazily (100k Pods of JSON is ~0.6 GB)."""
    rng = random.Random(seed)
    namespaces = [f"team-{i:02d}-{_suffix(rng, 4)}" for i in range(40)]
    nodes = [f"ip-10-0-{i // 250}-{i % 250}.ec2.internal" for i in range(500)]
    items: list[bytes] = []
    made = 0
    while made < n:
        ns = rng.choice(namespaces)
        app = f"svc-{_suffix(rng, 6)}"
        rs = f"{app}-{_suffix(rng, 9)}"
        containers = rng.choice([1, 1, 1, 2, 2, 3])
        for _ in range(min(rng.randint(20, 200), n - made)):
            items.append(pod(rng, ns, app, rs, rng.choice(nodes), containers))
            made += 1
            if len(items) == PAGE:
                yield _page(items, made < n)
                items = []
    if items:
        yield _page(items, False)


def _page(items: list[bytes], more: bool) -> bytes:
    meta = b'{"resourceVersion":"123456","continue":"x"}' if more else b'{"resourceVersion":"1"}'
    return (
        b'{"kind":"PodList","apiVersion":"v1","metadata":'
        + meta
        + (b',"items":[' + b",".join(items) + b"]}")
    )


@dataclass
class CacheRun:
    pods: int
    bytes_per_pod: float
    rss_per_pod: float
    json_per_pod: float
    pods_per_second: float
    detected_per_second: float


def fill(n: int) -> tuple[ObjectStore[PodFacts], Interner, int, float]:
    """Fill a store the daemon's way; (store, its interner, JSON bytes read, seconds spent
    decoding). The interner lives as long as its watch in the daemon: it is counted."""
    store: ObjectStore[PodFacts] = ObjectStore()
    interner = Interner()
    read = 0
    spent = 0.0
    store.begin_relist()
    for body in pages(n):
        read += len(body)
        started = time.perf_counter()
        for item in decode_list_page(body).get("items") or ():
            facts = pod_from_wire(decode_pod(item), interner)
            store.put((facts.namespace, facts.name), facts)
        spent += time.perf_counter() - started
    store.end_relist()
    return store, interner, read, spent


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def run(n: int) -> CacheRun:
    gc.collect()
    rss_before = _rss_bytes()
    store, interner, read, spent = fill(n)  # untraced: the RSS growth, and the decode rate
    gc.collect()
    rss = _rss_bytes() - rss_before
    assert len(store) == n, (len(store), n)
    detected = detect_rate(store)
    del store, interner
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    store, interner, _, _ = fill(n)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del store, interner
    return CacheRun(n, held / n, rss / n, read / n, n / spent if spent else 0.0, detected)


def detect_rate(store: ObjectStore[PodFacts]) -> float:
    """Pods a second the detectors get through, as in a relist after a restart (every Pod
    seen for the first time since, its findings checked against the ledger)."""
    detector = Detector("bench", SeenLedger(), DetectorsConfig(enabled=True))
    pods = list(store.values())
    started = time.perf_counter()
    for facts in pods:
        detector.pod_changed(None, facts, 0.0)
    spent = time.perf_counter() - started
    return len(pods) / spent if spent else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[100_000])
    args = parser.parse_args(argv)
    print(
        "| Pods | cache bytes/Pod (tracemalloc) | RSS growth/Pod | JSON read/Pod "
        "| decode rate | detectors rate |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.pods:
        r = run(n)
        print(
            f"| {r.pods:,} | {r.bytes_per_pod:,.0f} B | {r.rss_per_pod:,.0f} B "
            f"| {r.json_per_pod:,.0f} B | {r.pods_per_second:,.0f} Pods/s "
            f"| {r.detected_per_second:,.0f} Pods/s |"
        )


if __name__ == "__main__":
    main()
