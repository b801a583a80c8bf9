"""deploy/ agrees with the program: its config passes check-config, its RBAC is exactly what
that config needs (as doctor computes it), and the Deployment wires config, ports, state and
identity together. No cluster needed; tests/e2e/test_deploy.py applies them to a real one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_event_watcher import __version__
from kube_event_watcher.cli import main
from kube_event_watcher.kube.diagnosis import required_access
from tests.e2e.manifests import DEPLOY_DIR, granted, kustomization_files, load_documents

NAMESPACE = "kube-event-watcher"


def docs(name: str) -> list[dict[str, Any]]:
    return load_documents(DEPLOY_DIR / name)


def config_text() -> str:
    text: str = docs("configmap.yaml")[0]["data"]["config.yaml"]
    return text


def needed(sections: dict[str, Any], cluster_wide: bool) -> set[tuple[str, str, str]]:
    needs = required_access(sections, [None], NAMESPACE)
    return {
        (n.group, f"{n.resource}/{n.subresource}" if n.subresource else n.resource, n.verb)
        for n in needs
        if (n.namespace is None) == cluster_wide
    }


def container() -> dict[str, Any]:
    spec: dict[str, Any] = docs("deployment.yaml")[0]["spec"]["template"]["spec"]
    first: dict[str, Any] = spec["containers"][0]
    return first


def test_the_deployed_config_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text())
    assert main(["check-config", "-c", str(path)]) == 0
    assert ": valid" in capsys.readouterr().out


def test_the_commented_webhook_works_with_the_example_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Uncommented as an operator would; its ${VARS} come from the Secret's keys.
    text = re.sub(r"(?m)^(\s*)# (- name: hook|  type:|  url:|  secret:)", r"\1\2", config_text())
    assert yaml.safe_load(text)["receivers"][1]["type"] == "webhook"
    secret = docs("secret.example.yaml")[0]
    for key, value in secret["stringData"].items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "type: webhook" in out
    assert secret["stringData"]["KEW_WEBHOOK_SECRET"] not in out


def test_the_cluster_role_grants_exactly_what_the_config_needs() -> None:
    role, binding = docs("rbac-cluster.yaml")
    sections = yaml.safe_load(config_text())
    # `get` on events is not used by the daemon today; kubectl-style read access is harmless.
    assert granted(role["rules"]) == needed(sections, cluster_wide=True) | {
        ("events.k8s.io", "events", "get")
    }
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_namespaced_role_is_what_configmap_state_and_leader_election_need() -> None:
    role, binding = docs("rbac-namespace.yaml")
    sections = {
        **yaml.safe_load(config_text()),
        "state": {"backend": "configmap"},
        "ha": {"enabled": True},
    }
    assert granted(role["rules"]) == needed(sections, cluster_wide=False)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }


def test_the_log_tail_grant_is_only_pods_log() -> None:
    role, _ = docs("rbac-log-tail.yaml")
    sections = yaml.safe_load(config_text())
    with_tail = {
        **sections,
        "enrichment": {**sections["enrichment"], "log_tail": {"enabled": True}},
    }
    extra = needed(with_tail, cluster_wide=True) - needed(sections, cluster_wide=True)
    assert granted(role["rules"]) == extra == {("", "pods/log", "get")}


def test_the_detectors_grant_is_list_and_watch_on_pods_and_nodes() -> None:
    role, _ = docs("rbac-detectors.yaml")
    sections = yaml.safe_load(config_text())
    with_detectors = {**sections, "detectors": {"enabled": True}}
    extra = needed(with_detectors, cluster_wide=True) - needed(sections, cluster_wide=True)
    expected = {(g, r, v) for g, r in (("", "pods"), ("", "nodes")) for v in ("list", "watch")}
    assert granted(role["rules"]) == extra == expected
    cached = {**sections, "enrichment": {**sections["enrichment"], "watch_objects": True}}
    assert needed(cached, cluster_wide=True) - needed(sections, cluster_wide=True) == expected


def test_every_binding_names_the_deployed_service_account() -> None:
    account = docs("serviceaccount.yaml")[0]["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    for name in (
        "rbac-cluster.yaml",
        "rbac-namespace.yaml",
        "rbac-log-tail.yaml",
        "rbac-detectors.yaml",
    ):
        assert docs(name)[1]["subjects"] == [subject], name
    deployment = docs("deployment.yaml")[0]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["name"]
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_the_deployment_wires_config_port_state_and_image() -> None:
    deployment = docs("deployment.yaml")[0]
    pod = deployment["spec"]["template"]["spec"]
    main_container = container()
    mounts = {m["name"]: m["mountPath"] for m in main_container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmap = docs("configmap.yaml")[0]
    config = yaml.safe_load(config_text())

    assert main_container["image"] == f"kube-event-watcher:{__version__}"
    assert main_container["args"] == ["run", "--config", f"{mounts['config']}/config.yaml"]
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert mounts["state"] == config["state"]["path"]
    assert "emptyDir" in volumes["tmp"]  # the root file system is read-only
    assert config["clusters"] == [{"name": "in-cluster", "in_cluster": True}]
    port = int(config["ops"]["listen"].rsplit(":", 1)[1])
    assert config["ops"]["listen"].startswith("0.0.0.0:")  # the kubelet's probes reach it
    assert main_container["ports"] == [{"name": "ops", "containerPort": port, "protocol": "TCP"}]
    probes = {
        kind: main_container[kind]["httpGet"]
        for kind in ("livenessProbe", "readinessProbe", "startupProbe")
    }
    assert probes == {
        "livenessProbe": {"path": "/healthz", "port": "ops"},
        "readinessProbe": {"path": "/readyz", "port": "ops"},
        "startupProbe": {"path": "/healthz", "port": "ops"},
    }
    assert set(main_container["resources"]) == {"requests", "limits"}
    secret = docs("secret.example.yaml")[0]
    assert main_container["envFrom"] == [
        {"secretRef": {"name": secret["metadata"]["name"], "optional": True}}
    ]


def test_the_security_context_is_restricted() -> None:
    pod = docs("deployment.yaml")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container()["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_the_kustomization_lists_every_manifest_but_the_optional_grants() -> None:
    listed = {p.name for p in kustomization_files()}
    present = {p.name for p in DEPLOY_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert present - listed == {"rbac-log-tail.yaml", "rbac-detectors.yaml"}
    assert listed <= present
    for path in kustomization_files():
        for doc in load_documents(path):
            if doc["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
                assert doc["metadata"]["namespace"] == NAMESPACE, (path.name, doc["kind"])
