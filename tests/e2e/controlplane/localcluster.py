"""A real cluster on one machine: ControlPlane + kube-controller-manager + kube-scheduler + kwok.

`LocalCluster` starts a `ControlPlane` of its own (ServiceAccount admission on: the
controller-manager creates every namespace's ``default`` ServiceAccount), then
kube-controller-manager, kube-scheduler and kwok, all on loopback, each with its own client
certificate and kubeconfig, and registers fake Nodes that kwok plays the kubelet for. The
Stages in ``kwok-stages/`` make labelled Pods crash-loop, get OOM-killed, fail to pull their
image or stay Terminating, and a labelled Node go NotReady; the controllers react as in any
cluster (ReplicaSets create Pods, the scheduler binds or reports FailedScheduling, the
node-lifecycle controller taints NotReady Nodes) and record their real Events.

The node-lifecycle controller runs with short periods (``--node-monitor-period=1s``, grace
`node_monitor_grace_period`), and kwok renews each Node's Lease every
`node_lease_seconds` / 4 s, so a Node whose kubelet stops or reports NotReady is tainted within
seconds rather than the minute a default cluster takes. A second kwok process plays the
kubelet of "doomed" Nodes (``create_node(..., doomed=True)``); ``stop_doomed_kubelet()`` stops
it, and the node-lifecycle controller finds those Nodes unreachable, as when a machine dies;
``start_doomed_kubelet()`` brings it back.

The kube-apiserver writes an audit log (``audit_log``) of the requests made as `DAEMON_USER`
only, one line per request as it is received: ``daemon_kubeconfig()`` is that identity, so a
test can count what the daemon asks of the API (``daemon_requests()``).
"""

from __future__ import annotations

import atexit
import json
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from .cluster import (
    JSON,
    ApiError,
    ControlPlane,
    ControlPlaneError,
    _Process,
    free_port,
    missing_binaries,
    tail,
)

HERE = Path(__file__).resolve().parent
STAGES_DIR = HERE / "kwok-stages"
LOCAL_CLUSTER_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)
# kwok manages only the Nodes that carry this annotation (kwok's documented convention).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# A second kwok process plays the kubelet of the Nodes annotated so; stop_doomed_kubelet()
# stops it, and their Leases and status stop being renewed as when a machine dies.
DOOMED_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "doomed")
FAULT_LABEL = "e2e.kube-event-watcher/fault"
# The identity daemon_kubeconfig() gives the daemon; only its requests are audited.
DAEMON_USER = "kube-event-watcher"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete]
rules:
- level: Metadata
  users: ["{DAEMON_USER}"]
- level: None
"""
NODE_FAULT_LABEL = "e2e.kube-event-watcher/node-fault"
# Controllers the scenarios need (names as in kube-controller-manager --help, 1.37).
CONTROLLERS = (
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "pod-garbage-collector-controller",
    # for the noisy namespace: an HPA with no metrics API warns at every sync
    "horizontal-pod-autoscaler-controller",
)

T = TypeVar("T")


class LocalCluster:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with fake Nodes.

    Use as a context manager, or call start() and stop(). `plane` is the underlying
    ControlPlane (admin kubeconfig at ``plane.kubeconfig``, the admin HTTP helpers).
    """

    def __init__(
        self,
        bin_dir: Path,
        *,
        workdir: Path | None = None,
        nodes: Iterable[str] = ("kwok-node-0", "kwok-node-1"),
        node_monitor_grace_period: str = "8s",
        node_lease_seconds: int = 4,
        ready_timeout: float = 120,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        missing = missing_binaries(self.bin_dir, LOCAL_CLUSTER_BINARIES)
        if missing:
            raise ControlPlaneError(
                f"{self.bin_dir} lacks {', '.join(missing)}: run tests/e2e/controlplane/build.sh"
            )
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kew-localcluster-"))
        self.node_names = tuple(nodes)
        self.node_monitor_grace_period = node_monitor_grace_period
        self.node_lease_seconds = node_lease_seconds
        self.ready_timeout = ready_timeout
        self.audit_policy = self.workdir / "audit-policy.yaml"
        self.audit_log = self.workdir / "audit.log"
        self.plane = ControlPlane(
            self.bin_dir,
            workdir=self.workdir / "controlplane",
            ready_timeout=ready_timeout,
            extra_apiserver_args=[
                f"--audit-policy-file={self.audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
            ],
            service_account_admission=True,
        )
        self.controller_manager_port = free_port()
        self.scheduler_port = free_port()
        self.controller_manager_log = self.workdir / "kube-controller-manager.log"
        self.scheduler_log = self.workdir / "kube-scheduler.log"
        self.kwok_log = self.workdir / "kwok.log"
        self.doomed_kwok_log = self.workdir / "kwok-doomed.log"
        self._controller_manager: _Process | None = None
        self._scheduler: _Process | None = None
        self._kwok: _Process | None = None
        self._doomed_kwok: _Process | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig."""
        return self.plane.kubeconfig

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start everything and return once the Nodes are Ready and the `default` namespace
        has its ServiceAccount; `progress` is told which step runs."""
        say = progress or (lambda _message: None)
        atexit.register(self.stop)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.audit_policy.write_text(AUDIT_POLICY)
            say("starting etcd and kube-apiserver")
            self.plane.start()
            self._make_processes()
            assert self._controller_manager and self._scheduler
            assert self._kwok and self._doomed_kwok
            say("starting kube-controller-manager")
            self._controller_manager.start()
            say("starting kube-scheduler")
            self._scheduler.start()
            say("starting kwok (fake nodes)")
            self._kwok.start()
            self._doomed_kwok.start()
            self._wait_healthy("kube-controller-manager", self.controller_manager_port)
            self._wait_healthy("kube-scheduler", self.scheduler_port)
            say(f"registering {len(self.node_names)} fake nodes")
            for name in self.node_names:
                self.create_node(name)
            for name in self.node_names:
                self.wait_node_ready(name)
            say("waiting for the default ServiceAccount")
            self.wait_service_account("default")
        except BaseException:
            self.stop(keep_workdir=True)
            raise

    def stop(self, *, keep_workdir: bool = False) -> None:
        """Stop kwok, the scheduler, the controller-manager, then the control plane."""
        atexit.unregister(self.stop)
        try:
            for process in (
                self._doomed_kwok,
                self._kwok,
                self._scheduler,
                self._controller_manager,
            ):
                if process is not None:
                    process.stop(timeout=10)
        finally:
            self.plane.stop(keep_workdir=True)
            if self._own_workdir and not keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def doomed_kubelet_running(self) -> bool:
        return self._doomed_kwok is not None and self._doomed_kwok.running

    def stop_doomed_kubelet(self) -> None:
        """Stop the kwok that plays the doomed Nodes' kubelet (SIGKILL: it dies, it does not
        say goodbye). Their Leases expire; the other Nodes are not affected."""
        if self._doomed_kwok is not None:
            self._doomed_kwok.stop(kill=True)

    def start_doomed_kubelet(self) -> None:
        """Start the doomed Nodes' kubelet again (a no-op while it runs): their Leases are
        renewed again. kwok's Stages do not post Ready again for a Node the controller marked
        Unknown; ``mark_node_ready()`` does what the kubelet's first status update would."""
        if self._doomed_kwok is not None and not self._doomed_kwok.running:
            self._doomed_kwok.start()

    def mark_node_ready(self, name: str) -> JSON:
        """Post Ready=True (heartbeat now) to the Node's status, as a recovered kubelet does."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        node: JSON = self.plane.get(f"/api/v1/nodes/{name}")
        conditions = [
            {**c, "lastHeartbeatTime": now}
            for c in node["status"].get("conditions") or []
            if c.get("type") != "Ready"
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
        # A merge patch replaces the whole list: every condition, Ready now True.
        updated: JSON = self.plane.patch_status(
            f"/api/v1/nodes/{name}", {"status": {"conditions": conditions}}
        )
        return updated

    def daemon_kubeconfig(self) -> Path:
        """A kubeconfig as `DAEMON_USER` (in ``system:masters``): the requests made with it
        are the ones ``daemon_requests()`` reads from the audit log."""
        path = self.workdir / f"{DAEMON_USER}.kubeconfig"
        if not path.exists():
            path = self._component_kubeconfig(DAEMON_USER, DAEMON_USER, "system:masters")
        return path

    def daemon_requests(self) -> list[JSON]:
        """The audit events of the requests `DAEMON_USER` made so far, one per request (verb,
        objectRef, requestURI, requestReceivedTimestamp, ...)."""
        if not self.audit_log.exists():
            return []
        found: list[JSON] = []
        for line in self.audit_log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the line being written
            if event.get("user", {}).get("username") == DAEMON_USER:
                found.append(event)
        return found

    # -- helpers ---------------------------------------------------------------------------

    def create_node(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        taints: list[JSON] | None = None,
        doomed: bool = False,
    ) -> JSON:
        """A Node that kwok manages (it has kwok's annotation); a `doomed` one's kubelet is
        the kwok that stop_doomed_kubelet() stops."""
        key, value = DOOMED_NODE_ANNOTATION if doomed else KWOK_NODE_ANNOTATION
        body: JSON = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    **(labels or {}),
                },
            },
            "spec": {"taints": taints} if taints else {},
        }
        node: JSON = self.plane.create_object("/api/v1/nodes", body)
        return node

    def wait_node_ready(self, name: str, timeout: float | None = None) -> JSON:
        def ready() -> JSON | None:
            node: JSON = self.plane.get(f"/api/v1/nodes/{name}")
            return node if node_condition(node, "Ready") == "True" else None

        return self.wait_for(f"node {name} Ready", ready, timeout)

    def wait_service_account(self, namespace: str, timeout: float | None = None) -> JSON:
        """The namespace's ``default`` ServiceAccount, once the controller-manager made it."""

        def found() -> JSON | None:
            try:
                account: JSON = self.plane.get(
                    f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
                )
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            return account

        return self.wait_for(f"ServiceAccount {namespace}/default", found, timeout)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """A namespace, returned once Pods can be created in it (its ServiceAccount exists)."""
        self.plane.create_namespace(name, labels)
        self.wait_service_account(name)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float | None = None) -> T:
        """Poll `probe` until it returns something other than None; ControlPlaneError (with
        the components' log tails) after `timeout` seconds."""
        deadline = time.monotonic() + (self.ready_timeout if timeout is None else timeout)
        while True:
            result = probe()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {what}.\n{self.log_tails()}")
            time.sleep(0.2)

    def log_tails(self, lines: int = 20) -> str:
        parts = []
        for name, path in (
            ("kube-controller-manager", self.controller_manager_log),
            ("kube-scheduler", self.scheduler_log),
            ("kwok", self.kwok_log),
            ("kwok (doomed nodes)", self.doomed_kwok_log),
            ("kube-apiserver", self.plane.apiserver_log),
        ):
            parts.append(f"--- {name} log ({path}) ---\n{tail(path, lines)}")
        return "\n".join(parts)

    # -- internals -------------------------------------------------------------------------

    def _component_kubeconfig(self, name: str, user: str, organization: str | None) -> Path:
        cert, key = self.plane.pki.issue_client(user, organization)
        path = self.workdir / f"{name}.kubeconfig"
        self.plane.write_kubeconfig(path, user, cert, key)
        return path

    def _make_processes(self) -> None:
        pki = self.plane.pki
        kcm_config = self._component_kubeconfig(
            "kube-controller-manager", "system:kube-controller-manager", None
        )
        self._controller_manager = _Process(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kcm_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self.workdir / 'kube-controller-manager-certs'}",
                "--leader-elect=false",
                # Each controller acts (and records its Events) as its own ServiceAccount.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_private}",
                f"--root-ca-file={pki.ca_cert}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--node-monitor-period=1s",
                "--horizontal-pod-autoscaler-sync-period=2s",  # 15 s in a real cluster
                f"--node-monitor-grace-period={self.node_monitor_grace_period}",
                f"--node-startup-grace-period={self.node_monitor_grace_period}",
                "--v=1",
            ],
            self.controller_manager_log,
        )
        scheduler_config = self._component_kubeconfig(
            "kube-scheduler", "system:kube-scheduler", None
        )
        self._scheduler = _Process(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={scheduler_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                f"--cert-dir={self.workdir / 'kube-scheduler-certs'}",
                "--leader-elect=false",
                "--v=1",
            ],
            self.scheduler_log,
        )
        # kwok patches Node and Pod status, deletes Pods, renews Leases and records Events
        # for every fake kubelet: an admin identity, as in kwokctl's own clusters.
        kwok_config = self._component_kubeconfig("kwok", "kwok-controller", "system:masters")

        def kwok(annotation: tuple[str, str], cidr: str, node_ip: str) -> list[str]:
            return [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={kwok_config}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={annotation[0]}={annotation[1]}",
                f"--node-lease-duration-seconds={self.node_lease_seconds}",
                f"--cidr={cidr}",
                f"--node-ip={node_ip}",
                *(f"--config={path}" for path in sorted(STAGES_DIR.glob("*.yaml"))),
                "--v=info",
            ]

        self._kwok = _Process(
            "kwok", kwok(KWOK_NODE_ANNOTATION, "10.244.0.0/17", "10.200.0.1"), self.kwok_log
        )
        self._doomed_kwok = _Process(
            "kwok (doomed nodes)",
            kwok(DOOMED_NODE_ANNOTATION, "10.244.128.0/17", "10.200.0.2"),
            self.doomed_kwok_log,
        )

    def _wait_healthy(self, name: str, port: int) -> None:
        """Wait for a component's /healthz on its secure port (self-signed: not verified)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        process = self._controller_manager if name == "kube-controller-manager" else self._scheduler

        def healthy() -> bool | None:
            if process is not None and not process.running:
                raise ControlPlaneError(
                    f"{name} exited with code {process.returncode}.\n{self.log_tails()}"
                )
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/healthz", context=context, timeout=2
                ) as resp:
                    return True if resp.status == 200 else None
            except (OSError, urllib.error.HTTPError):
                return None

        self.wait_for(f"{name} /healthz", healthy)


def node_condition(node: JSON, kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of a Node's condition `kind`, or None."""
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            status: str | None = condition.get("status")
            return status
    return None


def pod_container_status(pod: JSON, container: str = "app") -> JSON | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == container:
            result: JSON = status
            return result
    return None
