"""Broken workloads for the local cluster: one scenario per incident kind.

Each `Scenario` is a namespace plus the objects to create in it (and, for the Node scenario,
a Node). The kwok Stages in ``kwok-stages/`` pick the faulty Pods by the label
``e2e.kube-event-watcher/fault``; the scheduler and the controller-manager do the rest.
Shared by ``tests/e2e/test_local_cluster.py`` and ``tests/e2e/record_local_cluster.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .localcluster import FAULT_LABEL, NODE_FAULT_LABEL, LocalCluster

JSON = dict[str, Any]
IMAGE = "registry.invalid/kew/app:1.0"
MISSING_IMAGE = "registry.invalid/kew/app:does-not-exist"
STUCK_FINALIZER = "e2e.kube-event-watcher/hold"
FAULTY_NODE = "kwok-node-faulty"
DOOMED_NODE = "kwok-node-doomed"
# Keeps every other scenario's Pods off the scenario Nodes; their own Pods tolerate it.
NODE_FAULT_TOLERATION: JSON = {"key": NODE_FAULT_LABEL, "operator": "Exists"}


def fault_taint(value: str) -> JSON:
    return {"key": NODE_FAULT_LABEL, "value": value, "effect": "NoSchedule"}


def pod_spec(
    *,
    image: str = IMAGE,
    requests: Mapping[str, str] | None = None,
    node_name: str | None = None,
    tolerations: list[JSON] | None = None,
) -> JSON:
    container: JSON = {"name": "app", "image": image}
    if requests:
        container["resources"] = {"requests": dict(requests)}
    spec: JSON = {"containers": [container], "terminationGracePeriodSeconds": 5}
    if node_name:
        spec["nodeName"] = node_name
    if tolerations:
        spec["tolerations"] = tolerations
    return spec


def labels_for(app: str, fault: str | None) -> dict[str, str]:
    labels = {"app": app}
    if fault:
        labels[FAULT_LABEL] = fault
    return labels


def deployment(
    name: str, namespace: str, *, fault: str | None = None, replicas: int = 1, **spec: Any
) -> JSON:
    labels = labels_for(name, fault)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(**spec)},
        },
    }


def pod(
    name: str,
    namespace: str,
    *,
    fault: str | None = None,
    finalizers: tuple[str, ...] = (),
    **spec: Any,
) -> JSON:
    metadata: JSON = {"name": name, "namespace": namespace, "labels": labels_for(name, fault)}
    if finalizers:
        metadata["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec(**spec)}


def apply(cluster: LocalCluster, scenario: Scenario) -> None:
    """Register the scenario's Node, create its namespace and objects."""
    if scenario.node:
        node = scenario.node
        cluster.create_node(
            node.name, labels=node.labels, taints=list(node.taints), doomed=node.doomed
        )
    cluster.create_namespace(scenario.namespace)
    for body in scenario.objects:
        cluster.plane.create_object(collection_path(body), body)


def collection_path(body: JSON) -> str:
    """The POST path for `body` (only the kinds used here)."""
    namespace = body["metadata"]["namespace"]
    if body["kind"] == "Deployment":
        return f"/apis/apps/v1/namespaces/{namespace}/deployments"
    if body["kind"] == "Pod":
        return f"/api/v1/namespaces/{namespace}/pods"
    if body["kind"] == "HorizontalPodAutoscaler":
        return f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
    raise ValueError(f"no collection path for {body['kind']}")


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A Node a scenario registers first (``LocalCluster.create_node``)."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[JSON, ...]
    doomed: bool = False  # its kubelet is the kwok that stop_doomed_kubelet() stops


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    namespace: str
    summary: str
    objects: tuple[JSON, ...]
    node: NodeSpec | None = None


def autoscaler(name: str, namespace: str) -> JSON:
    """An HPA on CPU for Deployment `name`; with no metrics API (none here, as in many
    clusters before metrics-server is up) the controller warns at every sync."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }


def scenarios() -> dict[str, Scenario]:
    """Every scenario by name; each has a namespace of its own."""
    found = [
        Scenario(
            "crashloop",
            "kew-crashloop",
            "a Deployment whose container exits 1 again and again (CrashLoopBackOff)",
            (deployment("crashloop", "kew-crashloop", fault="crashloop"),),
        ),
        Scenario(
            "oomkilled",
            "kew-oomkilled",
            "a Deployment whose container is OOM-killed again and again (exit 137)",
            (deployment("oomkilled", "kew-oomkilled", fault="oomkilled"),),
        ),
        Scenario(
            "imagepull",
            "kew-imagepull",
            "a Deployment whose image does not exist (ErrImagePull, ImagePullBackOff)",
            (deployment("imagepull", "kew-imagepull", fault="imagepull", image=MISSING_IMAGE),),
        ),
        Scenario(
            "stuck-terminating",
            "kew-stuck",
            "a deleted Pod that a finalizer keeps Terminating",
            (
                pod(
                    "stuck",
                    "kew-stuck",
                    fault="stuck-terminating",
                    finalizers=(STUCK_FINALIZER,),
                ),
            ),
        ),
        Scenario(
            "unschedulable",
            "kew-unschedulable",
            "a Deployment whose Pod asks for more CPU than any Node has (FailedScheduling)",
            (deployment("greedy", "kew-unschedulable", requests={"cpu": "5000"}),),
        ),
        Scenario(
            "node-not-ready",
            "kew-node-not-ready",
            "a Node whose kubelet reports NotReady (its runtime is down), with a Pod on it",
            (
                pod(
                    "on-faulty-node",
                    "kew-node-not-ready",
                    node_name=FAULTY_NODE,
                    tolerations=[NODE_FAULT_TOLERATION],
                ),
            ),
            node=NodeSpec(
                FAULTY_NODE, {NODE_FAULT_LABEL: "not-ready"}, (fault_taint("not-ready"),)
            ),
        ),
        Scenario(
            "node-unreachable",
            "kew-node-unreachable",
            "a Node whose kubelet dies (no more Lease renewals), with a Pod on it",
            (
                pod(
                    "on-doomed-node",
                    "kew-node-unreachable",
                    node_name=DOOMED_NODE,
                    tolerations=[NODE_FAULT_TOLERATION],
                ),
            ),
            node=NodeSpec(DOOMED_NODE, {}, (fault_taint("doomed"),), doomed=True),
        ),
        Scenario(
            "noisy",
            "kew-noisy",
            "a healthy Deployment whose HPA finds no metrics API: a Warning every sync",
            (
                deployment("web", "kew-noisy", image=IMAGE, requests={"cpu": "100m"}),
                autoscaler("web", "kew-noisy"),
            ),
        ),
    ]
    return {scenario.name: scenario for scenario in found}
