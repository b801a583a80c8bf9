"""`doctor` against the real kube-apiserver: a healthy admin setup passes every step; a
ServiceAccount token without RBAC gets the denials and a snippet that, applied to the same
server, fixes them; a kubeconfig with the wrong CA gets the unknown-authority diagnosis.
(The other broken setups — names not in the SANs, expired certificates, skewed clocks, closed
ports, unresolvable hosts — need a server we can misconfigure: tests/integration/doctor.)"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.doctor import run_doctor
from kube_event_watcher.kube.diagnosis import Check, render_text
from kube_event_watcher.notifiers.registry import config_models
from tests.conftest import write_kubeconfig
from tests.e2e.controlplane.cluster import ControlPlane
from tests.e2e.manifests import create_all
from tests.e2e.rbac import ServiceAccount
from tests.support.tls import TestCA

CLUSTER_STEPS = ["config", "dns", "tcp", "tls", "whoami", "rbac", "api", "watch"]


async def diagnose(kubeconfig: Path, raw: dict[str, Any]) -> dict[str, Check]:
    loaded = parse_config(raw, "test", config_models(), env={})
    checks = await run_doctor(
        loaded, kubeconfig=str(kubeconfig), env={}, clock=FakeClock(time.time())
    )
    steps = {c.step: c for c in checks if c.scope.startswith("cluster")}
    assert list(steps) == CLUSTER_STEPS, render_text(checks)
    return steps


def admin_user(plane: ControlPlane) -> dict[str, str]:
    return {
        "client-certificate-data": base64.b64encode(plane.pki.admin_cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(plane.pki.admin_key.read_bytes()).decode(),
    }


def test_a_healthy_admin_kubeconfig_passes_every_step(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # The CLI as a user runs it, JSON for automation; exit 0 means every step passed.
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"receivers": []}))
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "kube_event_watcher.cli", "doctor", "-c", str(config)),
            *("--output", "json", "--kubeconfig", str(control_plane.kubeconfig)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": "", "HOME": str(tmp_path)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["step"]: c for c in json.loads(proc.stdout)["checks"]}
    assert list(checks) == CLUSTER_STEPS
    assert {s: c["status"] for s, c in checks.items()} == dict.fromkeys(CLUSTER_STEPS, "ok")
    assert checks["whoami"]["summary"] == "authenticated as admin"
    assert "v1.37.2" in checks["api"]["summary"]
    assert checks["watch"]["data"]["resource_version"]


async def test_a_service_account_without_rbac_gets_the_denials_and_a_snippet_that_fixes_them(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    ns = f"e2e-doctor-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(ns)
    control_plane.create_object(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kew"}},
    )
    token = control_plane.create_service_account_token(ns, "kew")
    kubeconfig = write_kubeconfig(
        tmp_path / "kc",
        control_plane.server,
        control_plane.pki.ca_cert.read_bytes(),
        {"token": token},
    )
    raw: dict[str, Any] = {"sources": [{"namespaces": [ns]}], "receivers": []}
    steps = await diagnose(kubeconfig, raw)
    user = f"system:serviceaccount:{ns}:kew"
    assert steps["whoami"].summary == f"authenticated as {user}"
    rbac = steps["rbac"]
    assert rbac.status == "fail"
    # Events list/watch, Pod/ReplicaSet/Job get in the namespace, Node get cluster-wide.
    assert "6 of 6 permissions the config needs are denied" in rbac.summary
    rows = [line.split()[:4] for line in rbac.seen]
    assert ["watch", "events.k8s.io/events", ns, "DENIED"] in rows
    assert rbac.data["snippet"] in rbac.fix
    documents = list(yaml.safe_load_all(rbac.data["snippet"]))
    assert [(d["kind"], d["metadata"].get("namespace")) for d in documents] == [
        ("ClusterRole", None),
        ("ClusterRoleBinding", None),
        ("Role", ns),
        ("RoleBinding", ns),
    ]
    assert documents[1]["subjects"] == [{"kind": "ServiceAccount", "name": "kew", "namespace": ns}]

    # Ready to apply: the real server takes it, and doctor then passes. (Cluster-scoped names
    # get a suffix only because deploy/'s ClusterRole of the same name lives here too.)
    suffix = f"-{ns}"
    for doc in documents:
        if doc["kind"].startswith("Cluster"):
            doc["metadata"]["name"] += suffix
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] += suffix
    assert [r.status for r in create_all(control_plane, documents)] == [201] * 4
    account = ServiceAccount(ns, "kew")
    account.wait_until(control_plane, True, "get", "nodes")
    account.wait_until(control_plane, True, "watch", "events", ns, "events.k8s.io")
    fixed = await diagnose(kubeconfig, raw)
    assert {s: c.status for s, c in fixed.items()} == dict.fromkeys(CLUSTER_STEPS, "ok")


async def test_a_kubeconfig_with_the_wrong_ca_gets_the_unknown_authority_diagnosis(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    other = TestCA("some-other-ca")
    kubeconfig = write_kubeconfig(
        tmp_path / "kc", control_plane.server, other.cert_pem, admin_user(control_plane)
    )
    steps = await diagnose(kubeconfig, {"receivers": []})
    tls = steps["tls"]
    assert (tls.status, tls.data["case"]) == ("fail", "unknown_authority")
    assert "signed by an authority we do not trust (CN=kube-event-watcher-e2e-ca)" in tls.summary
    assert any("subject CN=some-other-ca" in line for line in tls.seen)
    assert "certificate-authority-data" in tls.fix[0]
    assert any(f.startswith("UNSAFE, last resort") for f in tls.fix)
    assert [steps[s].status for s in ("dns", "tcp")] == ["ok", "ok"]
    assert [steps[s].status for s in ("whoami", "rbac", "api", "watch")] == ["skip"] * 4
