"""Manifests (YAML) to API requests: what `kubectl create -f` does, for the kinds we ship.

No discovery: a small table maps each kind to its resource and scope, and a kind not in it is
an error that says to add it. `create` is a server-side create (POST to the collection), so
every admission step of the real apiserver (Pod Security, RBAC escalation checks,
validation) runs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.controlplane.cluster import ControlPlane, Response

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO / "deploy"

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kind:
    resource: str
    namespaced: bool


# (apiVersion, kind) -> resource: the kinds in deploy/ and the e2e tests.
KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "Namespace"): Kind("namespaces", False),
    ("v1", "ServiceAccount"): Kind("serviceaccounts", True),
    ("v1", "ConfigMap"): Kind("configmaps", True),
    ("v1", "Secret"): Kind("secrets", True),
    ("v1", "Service"): Kind("services", True),
    ("v1", "Pod"): Kind("pods", True),
    ("v1", "Node"): Kind("nodes", False),
    ("apps/v1", "Deployment"): Kind("deployments", True),
    ("apps/v1", "ReplicaSet"): Kind("replicasets", True),
    ("batch/v1", "Job"): Kind("jobs", True),
    ("policy/v1", "PodDisruptionBudget"): Kind("poddisruptionbudgets", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): Kind("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): Kind("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): Kind("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): Kind("rolebindings", True),
}


def load_documents(path: Path) -> list[JSON]:
    """Every non-empty YAML document in a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization_files(directory: Path = DEPLOY_DIR) -> list[Path]:
    """The files kustomization.yaml lists under `resources`, in its order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [directory / name for name in kustomization["resources"]]


def collection_path(doc: JSON) -> str:
    """The URL path to POST `doc` to, e.g. ``/apis/apps/v1/namespaces/ns/deployments``."""
    api_version, kind_name = doc["apiVersion"], doc["kind"]
    kind = KINDS.get((api_version, kind_name))
    if kind is None:
        raise KeyError(f"{api_version} {kind_name}: not in tests/e2e/manifests.py KINDS; add it")
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if not kind.namespaced:
        return f"{prefix}/{kind.resource}"
    namespace = doc.get("metadata", {}).get("namespace")
    if not namespace:
        raise ValueError(f"{kind_name} {doc['metadata'].get('name')!r} has no namespace")
    return f"{prefix}/namespaces/{namespace}/{kind.resource}"


def object_path(doc: JSON) -> str:
    return f"{collection_path(doc)}/{doc['metadata']['name']}"


def create(plane: ControlPlane, doc: JSON, *, dry_run: bool = False) -> Response:
    """Server-side create of one object as the admin; the response whatever its status.

    With `dry_run` (``?dryRun=All``) every admission step runs, Pod Security enforcement
    included, but nothing is stored.
    """
    params = {"dryRun": "All"} if dry_run else None
    return plane.request("POST", collection_path(doc), doc, params=params)


def create_all(plane: ControlPlane, docs: Iterable[JSON]) -> list[Response]:
    return [create(plane, doc) for doc in docs]


def granted(rules: list[JSON]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every combination a Role's or ClusterRole's rules grant."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def pod_from_template(workload: JSON, name: str, namespace: str) -> JSON:
    """A Pod made of a Deployment's pod template: what Pod Security enforcement judges (the
    workload itself is only warned about)."""
    template = copy.deepcopy(workload["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": name, "namespace": namespace},
        "spec": template["spec"],
    }
