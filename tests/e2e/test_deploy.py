"""deploy/ on the real kube-apiserver: accepted under Pod Security "restricted", and the
daemon runs through its in-cluster code path as the deployed ServiceAccount.

There is no kubelet, scheduler or controller-manager: the Deployment is stored (and its pod
template judged by Pod Security admission) but no ReplicaSet or Pod is made from it. So the
template is also submitted as a Pod directly, which is what enforcement judges; the daemon
then runs as a subprocess with the environment and files a pod would have
(KUBERNETES_SERVICE_HOST/PORT, a ServiceAccount token from the TokenRequest API, the CA).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_event_watcher.kube.diagnosis import AccessNeed, required_access
from tests.e2e.controlplane.cluster import ApiError, ControlPlane, Response, free_port
from tests.e2e.manifests import (
    DEPLOY_DIR,
    create,
    create_all,
    kustomization_files,
    load_documents,
    pod_from_template,
)
from tests.e2e.rbac import ServiceAccount
from tests.support.process import eventually, records, start_daemon, stop_daemon

NAMESPACE = "kube-event-watcher"
ACCOUNT = "kube-event-watcher"
ACCOUNT_REF = ServiceAccount(NAMESPACE, ACCOUNT)
"""The deployed identity; `ACCOUNT_REF.may(...)` is a SubjectAccessReview for it."""


@dataclass
class Deployed:
    docs: list[dict[str, Any]]
    responses: list[Response]

    def doc(self, kind: str) -> dict[str, Any]:
        return next(d for d in self.docs if d["kind"] == kind)


@pytest.fixture(scope="module")
def deployed(control_plane: ControlPlane) -> Deployed:
    """Everything kustomization.yaml lists, created once (namespaces never finish deleting
    here: there is no namespace controller)."""
    docs = [doc for path in kustomization_files() for doc in load_documents(path)]
    deployed = Deployed(docs, create_all(control_plane, docs))
    # Both bindings are in effect (the authorizer's informer has seen them).
    ACCOUNT_REF.wait_until(control_plane, True, "watch", "events", group="events.k8s.io")
    ACCOUNT_REF.wait_until(control_plane, True, "update", "configmaps", NAMESPACE)
    return deployed


def deployed_config() -> dict[str, Any]:
    configmap = load_documents(DEPLOY_DIR / "configmap.yaml")[0]
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["config.yaml"])
    return config


def test_every_manifest_is_accepted_in_a_restricted_namespace(
    control_plane: ControlPlane, deployed: Deployed
) -> None:
    refused = [
        (d["kind"], d["metadata"]["name"], r.status, r.body[:300])
        for d, r in zip(deployed.docs, deployed.responses, strict=True)
        if r.status != 201
    ]
    assert refused == []
    assert [d["kind"] for d in deployed.docs] == [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "Deployment",
    ]
    labels = control_plane.get(f"/api/v1/namespaces/{NAMESPACE}")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The namespace also warns on "restricted": a template that would not pass shows a
    # Warning header on the Deployment (see the weakened one below); ours has none.
    deployment = deployed.responses[-1]
    assert "Warning" not in deployment.headers
    stored = control_plane.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{ACCOUNT}")
    container = stored["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_pod_template_passes_enforcement_and_a_weaker_one_does_not(
    control_plane: ControlPlane, deployed: Deployed
) -> None:
    deployment = deployed.doc("Deployment")
    name = f"template-{uuid.uuid4().hex[:8]}"
    pod = create(control_plane, pod_from_template(deployment, name, NAMESPACE))
    assert pod.status == 201, pod.body[:500]
    # Never scheduled (no scheduler), so deletion is immediate.
    control_plane.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")

    weaker = copy.deepcopy(deployment)
    del weaker["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "allowPrivilegeEscalation"
    ]
    refused = create(control_plane, pod_from_template(weaker, f"weak-{name}", NAMESPACE))
    assert refused.status == 403
    assert 'violates PodSecurity "restricted:latest"' in refused.json()["message"]
    assert "allowPrivilegeEscalation" in refused.json()["message"]
    # A workload is not refused (enforcement is on Pods), but warned about.
    weaker["metadata"]["name"] = f"weak-{name}"
    warned = create(control_plane, weaker)
    assert warned.status == 201
    assert "allowPrivilegeEscalation" in warned.headers.get("Warning", "")
    control_plane.delete(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/weak-{name}")


def test_the_service_account_has_what_the_daemon_needs(
    control_plane: ControlPlane, deployed: Deployed
) -> None:
    # What doctor would check for the deployed config, with the ConfigMap state backend
    # and leader election on as well (the namespaced Role is for them).
    sections = {
        **deployed_config(),
        "state": {"backend": "configmap"},
        "ha": {"enabled": True},
    }
    needs = required_access(sections, [None, "default"], NAMESPACE)
    assert {(n.verb, n.resource) for n in needs} >= {
        ("watch", "events"),
        ("get", "pods"),
        ("get", "nodes"),
        ("get", "replicasets"),
        ("get", "jobs"),
        ("update", "configmaps"),
        ("create", "leases"),
    }

    def allowed(need: AccessNeed) -> bool:
        return ACCOUNT_REF.may(
            control_plane,
            need.verb,
            need.resource,
            need.namespace or "",
            need.group,
            need.subresource,
        )

    assert [n for n in needs if not allowed(n)] == []


@pytest.mark.parametrize(
    ("verb", "resource", "namespace", "group", "subresource"),
    [
        ("get", "secrets", NAMESPACE, "", ""),
        ("list", "secrets", "", "", ""),
        ("get", "secrets", "default", "", ""),
        ("delete", "pods", "default", "", ""),
        ("list", "pods", "", "", ""),
        ("create", "events", "default", "events.k8s.io", ""),
        ("create", "events", "default", "", ""),
        ("patch", "nodes", "", "", ""),
        ("update", "configmaps", "default", "", ""),
        ("delete", "configmaps", NAMESPACE, "", ""),
        ("update", "leases", "kube-system", "coordination.k8s.io", ""),
        ("get", "deployments", "default", "apps", ""),
        ("create", "pods", "default", "", "exec"),
        ("get", "pods", "default", "", "log"),  # only with the optional rbac-log-tail.yaml
    ],
)
def test_the_service_account_is_denied_the_rest(
    control_plane: ControlPlane,
    deployed: Deployed,
    verb: str,
    resource: str,
    namespace: str,
    group: str,
    subresource: str,
) -> None:
    assert not ACCOUNT_REF.may(control_plane, verb, resource, namespace, group, subresource)


def test_the_log_tail_grant_is_its_own_file(
    control_plane: ControlPlane, deployed: Deployed
) -> None:
    assert not ACCOUNT_REF.may(control_plane, "get", "pods", "default", subresource="log")
    responses = create_all(control_plane, load_documents(DEPLOY_DIR / "rbac-log-tail.yaml"))
    assert [r.status for r in responses] == [201, 201]
    try:
        ACCOUNT_REF.wait_until(control_plane, True, "get", "pods", "default", subresource="log")
        assert not ACCOUNT_REF.may(control_plane, "get", "pods", "default", subresource="exec")
    finally:
        # The other tests here see the default grant.
        control_plane.delete(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kube-event-watcher-log-tail"
        )
        control_plane.delete(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/kube-event-watcher-log-tail"
        )
        ACCOUNT_REF.wait_until(control_plane, False, "get", "pods", "default", subresource="log")


# -- the daemon, in-cluster, as the deployed ServiceAccount ------------------------------


@dataclass
class InCluster:
    """The daemon's config and pod environment; `start()` runs it as a subprocess."""

    config: Path
    env: dict[str, str]
    archive: Path
    token: str
    ops_port: int
    state: dict[str, Any]

    @property
    def log(self) -> Path:
        return self.config.parent / "daemon.log"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.subprocess.Process]:
        """The daemon, stopped with SIGTERM (and required to exit 0) when the block ends;
        killed instead when the block fails."""
        proc = await start_daemon(self.config, None, **self.env)
        try:
            yield proc
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        await stop_daemon(proc)

    async def delivered(self, proc: asyncio.subprocess.Process, uids: set[str]) -> list[str]:
        """The event uids the file receiver holds, once all of `uids` are among them."""

        def check() -> list[str] | None:
            found = [r["event"]["uid"] for r in records(self.archive) if "event" in r]
            return found if uids <= set(found) else None

        return await eventually(check, f"delivery of {uids}", self.log, proc)

    def get_ops(self, path: str) -> tuple[int, str]:
        """Status and body of the ops endpoint `path` (/healthz, /readyz, /metrics)."""
        url = f"http://127.0.0.1:{self.ops_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read().decode()

    def metric(self, series: str) -> float:
        """One sample of /metrics, e.g. ``kew_x_total{cache="pods",result="miss"}``."""
        for line in self.get_ops("/metrics")[1].splitlines():
            name, _, value = line.rpartition(" ")
            if name == series:
                return float(value)
        raise AssertionError(f"{series} not in /metrics")


@pytest.fixture(params=["file", "configmap"], ids=["state-file", "state-configmap"])
def in_cluster(
    control_plane: ControlPlane, deployed: Deployed, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[InCluster]:
    """The deployed config, changed only where a test must: the mounted-secret dir, the
    state path, a file receiver to read deliveries from, a free ops port, and aggregation
    off so that each event is one alert to count. Run with the shipped file state, and
    with the ConfigMap state backend (which the namespaced Role is for)."""
    token = control_plane.create_service_account_token(NAMESPACE, ACCOUNT)
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(token)
    (sa_dir / "ca.crt").write_bytes(control_plane.pki.ca_cert.read_bytes())
    (sa_dir / "namespace").write_text(NAMESPACE)
    archive = tmp_path / "alerts.jsonl"
    config = deployed_config()
    config["clusters"][0]["service_account_dir"] = str(sa_dir)
    backend: str = request.param
    config["state"] = {**config["state"], "path": str(tmp_path / "state")}
    config["state"] |= {"backend": backend, "commit_interval": "100ms"}
    if backend == "configmap":
        config["state"]["configmap"] = f"kew-state-{uuid.uuid4().hex[:8]}"
    config["receivers"] = [{"name": "archive", "type": "file", "path": str(archive)}]
    ops_port = free_port()
    config["ops"] = {**config["ops"], "listen": f"127.0.0.1:{ops_port}"}
    config["aggregation"] = {"enabled": False}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    # As in a pod: the service env vars, the token and CA files, and no kubeconfig.
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(control_plane.apiserver_port),
        "POD_NAMESPACE": NAMESPACE,
    }
    yield InCluster(config_path, env, archive, token, ops_port, config["state"])
    if backend == "configmap":
        with contextlib.suppress(ApiError):
            control_plane.delete(
                f"/api/v1/namespaces/{NAMESPACE}/configmaps/{config['state']['configmap']}"
            )


async def test_the_daemon_runs_in_cluster_and_delivers_each_warning_once(
    control_plane: ControlPlane, in_cluster: InCluster
) -> None:
    ns = f"e2e-deploy-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(ns)

    def warning(name: str, reason: str) -> str:
        return control_plane.pod_warning(ns, name, reason)

    before = warning("web-0", "BackOff")  # found by the first list (startup_max_age: 10m)
    control_plane.create_event(
        ns,
        "web-0.normal",
        {"kind": "Pod", "namespace": ns, "name": "web-0"},
        "Pulled",
        "x",
        type="Normal",
    )
    async with in_cluster.running() as proc:
        await in_cluster.delivered(proc, {before})
        # What the Deployment's probes ask: alive, and every watch established.
        assert in_cluster.get_ops("/healthz")[0] == 200
        assert in_cluster.get_ops("/readyz")[0] == 200
        during = warning("web-1", "FailedMount")  # seen by the watch
        await in_cluster.delivered(proc, {during})
        # Enrichment looked the Pods up as the ServiceAccount (not found, but not forbidden).
        pod_misses = 'kew_enrichment_cache_requests_total{cache="pods",result="miss"}'
        assert in_cluster.metric(pod_misses) >= 2
    if in_cluster.state["backend"] == "configmap":
        # Written by the ServiceAccount, in its own namespace, through the namespaced Role.
        name = in_cluster.state["configmap"]
        stored = control_plane.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}")
        assert stored["binaryData"]

    # Restarted with the same state: nothing again, only what is new.
    async with in_cluster.running() as proc:
        after = warning("web-2", "Unhealthy")
        delivered = await in_cluster.delivered(proc, {after})
    assert [u for u in delivered if u in {before, during, after}] == [before, during, after]
    alerts = records(in_cluster.archive)
    assert {r["cluster"] for r in alerts} == {"in-cluster"}
    assert {r["type"] for r in alerts} == {"Warning"}

    log = in_cluster.log.read_text()
    assert "in-cluster: KUBERNETES_SERVICE_HOST=127.0.0.1, token and CA from" in log
    assert "serviceaccount token" in log
    assert in_cluster.token not in log
    assert "forbidden" not in log.lower()  # enrichment's lookups and the state fit the RBAC
