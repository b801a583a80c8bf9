"""What a user gets for each incident of the local cluster: the daemon (a separate process, as
users run it) with the Pod and Node detectors and enrichment on, writing to a `file` receiver.

The daemon starts on a quiet cluster; then every scenario of ``controlplane/workloads.py``
breaks at once (each in its namespace, so they run side by side). As soon as an incident's
firing notification is in the file, the test ends the incident as an operator would (fixes
the Deployment, removes the finalizer, brings the Node back), and waits, with a deadline, for
the resolved one. Each test below then reads what the user got for one incident: how many
notifications (one firing, one resolved), and whether they say what, which workload, how
many Pods, since when and why. The API cost is counted from the kube-apiserver's audit log,
which logs the daemon's own identity only.

Timers an operator would pick for incidents that show themselves within seconds, shortened
to fit a test: ``group.wait`` 5 s (every reason of these incidents shows within a few seconds
of the first: the kubelet's BackOff and the detectors' CrashLoopBackOff/OOMKilled come
together), ``group.interval`` 10 m (an update only when it is worth a message; the default 5
m would also never come within this run), ``resolve_after`` 15 s (each live incident here
recurs every ~3-4 s: kwok's crash loop and pull retry cycles, the detectors' findings per
restart). The detectors' ``terminating_after`` 3 s, ``node_condition_after`` 3 s and
``check_interval`` 1 s stand for minutes in production.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.process import records, start_daemon, stop_daemon

from .controlplane.cluster import ApiError, free_port
from .controlplane.localcluster import (
    FAULT_LABEL,
    NODE_FAULT_LABEL,
    LocalCluster,
)
from .controlplane.workloads import (
    DOOMED_NODE,
    FAULTY_NODE,
    IMAGE,
    MISSING_IMAGE,
    apply,
    scenarios,
)

JSON = dict[str, Any]
CLUSTER = "local"
STARTUP_DEADLINE = 60.0  # the daemon listed everything
STORY_DEADLINE = 150.0  # every incident fired and resolved (~60 s on 2 cores)


@dataclass
class Incident:
    """One scenario as the user lives it: which notifications are about it, how to end it."""

    name: str
    about: Callable[[JSON], bool]
    fix: Callable[[LocalCluster], None]
    fired_at: float | None = None
    fixed_at: float | None = None
    notes: list[str] = field(default_factory=list)


def in_namespace(namespace: str) -> Callable[[JSON], bool]:
    return lambda record: record.get("namespace") == namespace


def about_node(node: str) -> Callable[[JSON], bool]:
    def probe(record: JSON) -> bool:
        if record["regarding"]["kind"] == "Node" and record["regarding"]["name"] == node:
            return True
        members = (record.get("group") or {}).get("members") or []
        return any(m["kind"] == "Node" and m["name"] == node for m in members)

    return probe


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def heal_template(namespace: str, name: str, **container: Any) -> Callable[[LocalCluster], None]:
    """Roll the Deployment out without the fault: its label gone (kwok's Stages then run the
    Pod normally), the container as given (a merge patch replaces the list)."""

    def fix(cluster: LocalCluster) -> None:
        template: JSON = {"metadata": {"labels": {FAULT_LABEL: None}}}
        if container:
            template["spec"] = {"containers": [{"name": "app", **container}]}
        cluster.plane.patch(deployment_path(namespace, name), {"spec": {"template": template}})

    return fix


def release_stuck_pod(cluster: LocalCluster) -> None:
    cluster.plane.patch(
        "/api/v1/namespaces/kew-stuck/pods/stuck", {"metadata": {"finalizers": None}}
    )


def remove_autoscaler(cluster: LocalCluster) -> None:
    """The operator drops the HPA (or installs metrics-server): the warnings stop."""
    cluster.plane.delete("/apis/autoscaling/v2/namespaces/kew-noisy/horizontalpodautoscalers/web")


def repair_faulty_node(cluster: LocalCluster) -> None:
    """The runtime is fixed: the kubelet posts Ready again (and the fault Stage no longer
    applies: its label is gone)."""
    cluster.plane.patch(
        f"/api/v1/nodes/{FAULTY_NODE}", {"metadata": {"labels": {NODE_FAULT_LABEL: None}}}
    )
    cluster.mark_node_ready(FAULTY_NODE)


def revive_doomed_node(cluster: LocalCluster) -> None:
    """The machine is back: its kubelet renews the Lease and posts Ready."""
    cluster.start_doomed_kubelet()
    cluster.mark_node_ready(DOOMED_NODE)


def incidents() -> dict[str, Incident]:
    found = [
        Incident(
            "crashloop", in_namespace("kew-crashloop"), heal_template("kew-crashloop", "crashloop")
        ),
        Incident(
            "oomkilled", in_namespace("kew-oomkilled"), heal_template("kew-oomkilled", "oomkilled")
        ),
        Incident(
            "imagepull",
            in_namespace("kew-imagepull"),
            heal_template("kew-imagepull", "imagepull", image=IMAGE),
        ),
        Incident(
            "unschedulable",
            in_namespace("kew-unschedulable"),
            heal_template(
                "kew-unschedulable", "greedy", image=IMAGE, resources={"requests": {"cpu": "100m"}}
            ),
        ),
        Incident("stuck-terminating", in_namespace("kew-stuck"), release_stuck_pod),
        Incident("node-not-ready", about_node(FAULTY_NODE), repair_faulty_node),
        Incident(
            "node-unreachable",
            lambda r: about_node(DOOMED_NODE)(r) or in_namespace("kew-node-unreachable")(r),
            revive_doomed_node,
        ),
        Incident("noisy", in_namespace("kew-noisy"), remove_autoscaler),
    ]
    return {incident.name: incident for incident in found}


@dataclass
class Story:
    """What the daemon sent, per incident, and what it asked of the API."""

    incidents: dict[str, Incident]
    sent: list[JSON]
    requests: list[JSON]
    metrics: str
    seconds: float
    log: Path
    resolved_seen: dict[str, float]  # notification id -> when the test first saw it

    def about(self, name: str) -> list[JSON]:
        incident = self.incidents[name]
        return [r for r in self.sent if incident.about(r)]


def group_key(record: JSON) -> str:
    return str((record.get("group") or {}).get("key"))


def all_resolved(incident: Incident, sent: list[JSON]) -> bool:
    """Every group the incident's notifications belong to has had its resolved one."""
    mine = [r for r in sent if incident.about(r)]
    groups = {group_key(r) for r in mine}
    done = {group_key(r) for r in mine if r["status"] == "resolved"}
    return bool(mine) and groups == done


def daemon_config(cluster: LocalCluster, directory: Path, port: int) -> Path:
    config: JSON = {
        "clusters": [{"name": CLUSTER, "kubeconfig": str(cluster.daemon_kubeconfig())}],
        "sources": [{"field_selector": "type=Warning", "startup_max_age": "10m"}],
        "aggregation": {"group": {"wait": "5s", "interval": "10m", "resolve_after": "15s"}},
        "enrichment": {"enabled": True, "log_tail": {"enabled": True}},
        "detectors": {
            "enabled": True,
            "terminating_after": "3s",
            "node_condition_after": "3s",
            "check_interval": "1s",
        },
        "receivers": [{"name": "file", "type": "file", "path": str(directory / "alerts.jsonl")}],
        "state": {"backend": "memory"},
        "ops": {"listen": f"127.0.0.1:{port}"},
        "log": {"level": "info"},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except OSError as exc:  # refused while starting, 503 while not ready (HTTPError)
        return getattr(exc, "code", 0), ""


def pod_running(cluster: LocalCluster, path: str) -> bool:
    try:
        return bool(cluster.plane.get(path)["status"].get("phase") == "Running")
    except ApiError:
        return False


async def until(what: str, probe: Callable[[], Any], deadline: float, log: Path) -> Any:
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}; daemon log:\n{tail}")
        await asyncio.sleep(0.25)


async def live_story(cluster: LocalCluster, directory: Path) -> Story:
    port = free_port()
    config = daemon_config(cluster, directory, port)
    log, alerts = directory / "daemon.log", directory / "alerts.jsonl"
    started = time.monotonic()
    proc = await start_daemon(config, None)
    try:
        await until(
            "the daemon ready (its watches listed)",
            lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
            started + STARTUP_DEADLINE,
            log,
        )
        for scenario in scenarios().values():
            apply(cluster, scenario)
        todo = incidents()
        stuck, doomed = (
            "/api/v1/namespaces/kew-stuck/pods/stuck",
            ("/api/v1/namespaces/kew-node-unreachable/pods/on-doomed-node"),
        )
        deadline = time.monotonic() + STORY_DEADLINE
        stuck_deleted = False
        resolved_seen: dict[str, float] = {}
        while True:
            if not stuck_deleted and pod_running(cluster, stuck):
                cluster.plane.delete(stuck)  # its finalizer keeps it Terminating
                stuck_deleted = True
            if cluster.doomed_kubelet_running and pod_running(cluster, doomed):
                cluster.stop_doomed_kubelet()  # the machine dies
            sent = records(alerts)
            for incident in todo.values():
                mine = [r for r in sent if incident.about(r)]
                if incident.fixed_at is None and any(r["status"] == "firing" for r in mine):
                    incident.fired_at = time.monotonic()
                    incident.fix(cluster)
                    incident.fixed_at = time.monotonic()
            for record in sent:
                if record["status"] == "resolved":
                    resolved_seen.setdefault(record["id"], time.monotonic())
            unresolved = [i.name for i in todo.values() if not all_resolved(i, sent)]
            if not unresolved:
                break
            if proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"no resolved notification for {unresolved} within {STORY_DEADLINE:g}s; "
                    f"sent: {[(r['status'], r['namespace'], r['reason']) for r in sent]}\n"
                    f"daemon log:\n{log.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.25)
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")[1]
    finally:
        await stop_daemon(proc)
    return Story(
        todo,
        records(alerts),
        cluster.daemon_requests(),
        metrics,
        time.monotonic() - started,
        log,
        resolved_seen,
    )


@pytest.fixture(scope="module")
def story(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Story:
    """The whole run, once for the module (the incidents progress side by side)."""
    return asyncio.run(live_story(local_cluster, tmp_path_factory.mktemp("incidents")))


def notifications(story: Story, name: str) -> tuple[JSON, JSON]:
    """The incident's notifications, which must be exactly one firing then one resolved."""
    sent = story.about(name)
    assert [r["status"] for r in sent] == ["firing", "resolved"], [
        (r["status"], group_key(r), r["reason"]) for r in sent
    ]
    firing, resolved = sent
    assert group_key(firing) == group_key(resolved)
    incident = story.incidents[name]
    assert incident.fixed_at is not None
    assert story.resolved_seen[resolved["id"]] > incident.fixed_at  # resolved once it was over
    return firing, resolved


def reasons(record: JSON) -> dict[str, int]:
    found: dict[str, int] = record["group"]["reasons"]
    return found


def from_detector(record: JSON) -> set[str]:
    """The reasons of the group's members that the detectors found (not an Event)."""
    return {
        m["reason"]
        for m in record["group"]["members"]
        if m["reason"] in {"CrashLoopBackOff", "OOMKilled", "ErrImagePull", "ImagePullBackOff"}
        or m["reason"].startswith(("PodStuck", "Node"))
    }


def one_pod_of(record: JSON, workload: str) -> None:
    """Which workload, how many Pods, since when."""
    facts = record["facts"]
    assert facts["workload"] == workload, facts
    assert record["group"]["objects"] == {"Pod": 1}
    assert record["first_seen"] <= record["last_seen"]
    assert record["first_seen"].endswith("Z")


def log_tail_said(facts: JSON) -> None:
    """The last log lines, or why there are none (kwok runs no container: no log)."""
    assert facts.get("log_tail") or facts.get("log_tail_unavailable"), facts


def test_crashloop_is_one_message_with_exit_code_and_both_sources(story: Story) -> None:
    firing, _ = notifications(story, "crashloop")
    one_pod_of(firing, "Deployment/crashloop")
    # The kubelet's BackOff Events and the detector's CrashLoopBackOff: one incident.
    assert {"BackOff", "CrashLoopBackOff"} <= reasons(firing).keys()
    facts = firing["facts"]
    assert facts["waiting_reason"] == "CrashLoopBackOff"
    assert (facts["exit_code"], facts["last_terminated_reason"]) == (1, "Error")
    assert facts["restart_count"] >= 1
    assert firing["likely_cause"] | {"restarts": "n"} == {
        "code": "crash",
        "container": facts["container"],
        "exit_code": "1",
        "restarts": "n",
        "terminated": "Error",
    }
    log_tail_said(facts)


def test_oomkilled_says_oomkilled_and_exit_137(story: Story) -> None:
    firing, _ = notifications(story, "oomkilled")
    one_pod_of(firing, "Deployment/oomkilled")
    assert {"BackOff", "OOMKilled"} <= reasons(firing).keys()
    facts = firing["facts"]
    assert (facts["exit_code"], facts["last_terminated_reason"]) == (137, "OOMKilled")
    assert firing["likely_cause"]["code"] == "oom"
    log_tail_said(facts)


def test_image_pull_failure_names_the_image_and_the_error(story: Story) -> None:
    firing, _ = notifications(story, "imagepull")
    one_pod_of(firing, "Deployment/imagepull")
    assert "Failed" in reasons(firing)  # the kubelet's Warning Events
    assert from_detector(firing) & {"ErrImagePull", "ImagePullBackOff"}
    facts = firing["facts"]
    assert facts["waiting_reason"] in {"ErrImagePull", "ImagePullBackOff"}
    assert MISSING_IMAGE in facts["waiting_message"], facts
    assert "not found" in facts["waiting_message"]  # the registry's error
    assert facts["restart_count"] == 0 and facts["pod_phase"] == "Pending"
    cause = firing["likely_cause"]
    assert (cause["code"], cause["image"]) == ("image", MISSING_IMAGE), cause
    assert "not found" in cause["error"]


def test_unschedulable_pod_says_why_it_fits_nowhere(story: Story) -> None:
    firing, _ = notifications(story, "unschedulable")
    one_pod_of(firing, "Deployment/greedy")
    assert firing["reason"] == "FailedScheduling"
    assert "Insufficient cpu" in firing["note"]
    assert "PodScheduled=False (Unschedulable)" in firing["facts"]["pod_conditions"]
    cause = firing["likely_cause"]
    assert cause["code"] == "unschedulable" and "Insufficient cpu" in cause["why"], cause
    assert "preemption" not in cause["why"]


def test_a_noisy_namespace_is_one_message_however_often_it_warns(story: Story) -> None:
    # The HPA controller warns at every sync (2 s here, 15 s in a real cluster) for as long
    # as it finds no metrics API: many Events, one firing notification and its resolve.
    firing, resolved = notifications(story, "noisy")
    assert firing["regarding"] == firing["regarding"] | {
        "kind": "HorizontalPodAutoscaler",
        "name": "web",
    }
    assert firing["group"]["objects"] == {"HorizontalPodAutoscaler": 1}
    assert "FailedGetResourceMetric" in reasons(firing)
    assert "metrics" in firing["note"].lower()
    told = sum(resolved["group"]["reasons"].values())
    assert told >= 3, resolved["group"]["reasons"]  # several warnings, folded into the two


def test_pod_stuck_terminating_is_found_without_any_warning_event(story: Story) -> None:
    firing, _ = notifications(story, "stuck-terminating")
    one_pod_of(firing, "Pod/stuck")
    assert reasons(firing) == {"PodStuckTerminating": 1}
    assert "stuck Terminating" in firing["note"]
    facts = firing["facts"]
    assert facts["pod_deleting"] is True and facts["pod_terminating_stuck"] is True
    assert facts["pod_terminating_overdue_seconds"] >= 3


def test_node_not_ready_names_the_condition_and_its_taints(story: Story) -> None:
    firing, resolved = notifications(story, "node-not-ready")
    assert (firing["regarding"]["kind"], firing["regarding"]["name"]) == ("Node", FAULTY_NODE)
    assert reasons(firing) == {"NodeNotReady": 1}
    assert firing["group"]["objects"] == {"Node": 1}
    facts = firing["facts"]
    assert (facts["node_ready"], facts["node_ready_reason"]) == ("False", "KubeletNotReady")
    assert "node.kubernetes.io/not-ready:NoExecute" in facts["node_taints"]
    assert "container runtime is down" in firing["note"]
    assert firing["likely_cause"] == {
        "code": "node",
        "node": FAULTY_NODE,
        "ready": "False",
        "why": "KubeletNotReady",
    }
    assert resolved["facts"]["node_ready"] == "True"


def test_node_unreachable_is_one_incident_with_its_pods(story: Story) -> None:
    """The Node's NodeNotReady finding and the node-controller's NodeNotReady Warning on each
    of its Pods are one group (the Pod's Node from the object cache): a firing and a
    resolve, about the Node, enriched with it, listing the Pod."""
    sent = story.about("node-unreachable")
    assert [r["status"] for r in sent] == ["firing", "resolved"], [
        (r["status"], group_key(r)) for r in sent
    ]
    firing = sent[0]
    assert (firing["regarding"]["kind"], firing["regarding"]["name"]) == ("Node", DOOMED_NODE)
    assert firing["group"]["objects"] == {"Node": 1, "Pod": 1}
    members = {(m["kind"], m["name"]) for m in firing["group"]["members"]}
    assert ("Pod", "on-doomed-node") in members
    facts = firing["facts"]
    assert (facts["node_ready"], facts["node_ready_reason"]) == ("Unknown", "NodeStatusUnknown")
    # The node-lifecycle controller taints NoSchedule first and NoExecute a moment later;
    # the facts are the Node as the firing saw it, with either or both.
    assert any(t.startswith("node.kubernetes.io/unreachable:") for t in facts["node_taints"])


def test_api_cost_is_one_list_and_watch_each_and_no_pod_or_node_get_per_alert(
    story: Story,
) -> None:
    """Counted by the kube-apiserver (audit log of the daemon's identity). The object cache
    answers enrichment for Pods and Nodes; a Pod GET happens only for a Pod the cache no
    longer has (the resolved notifications of Pods deleted by the fix: it says so, 404)."""
    counts: dict[tuple[str, str, str], int] = {}
    for request in story.requests:
        ref = request.get("objectRef") or {}
        key = (request["verb"], ref.get("resource", ""), ref.get("subresource", ""))
        counts[key] = counts.get(key, 0) + 1
    for resource in ("events", "pods", "nodes"):
        assert counts.get(("list", resource, ""), 0) == 1, counts
        assert counts.get(("watch", resource, ""), 0) == 1, counts
    assert counts.get(("get", "nodes", ""), 0) == 0, counts
    gone = [
        r
        for r in story.sent
        if r["status"] == "resolved" and "not found" in str(r["facts"].get("enrichment"))
    ]
    assert counts.get(("get", "pods", ""), 0) <= len(gone), counts
    deployments = 4  # one ReplicaSet each was alerted on; the owners cache keeps it
    assert counts.get(("get", "replicasets", ""), 0) <= deployments, counts
    crash_alerts = len(story.about("crashloop")) + len(story.about("oomkilled"))
    assert counts.get(("get", "pods", "log"), 0) <= crash_alerts, counts
    assert len(story.requests) <= 25, counts
