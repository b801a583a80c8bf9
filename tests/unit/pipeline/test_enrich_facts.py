"""Reading Pod, owner and Node facts from recorded API objects."""

from __future__ import annotations

from kube_event_watcher.pipeline.enrich import (
    OwnerRef,
    controller_ref,
    node_fact_map,
    node_facts,
    owner_fact_map,
    owner_facts,
    pick_container,
    pod_fact_map,
    pod_facts,
    wants_log_tail,
)
from kube_event_watcher.pipeline.normalize import parse_time
from tests.fixtures import load_object

NOW = parse_time("2027-01-15T02:12:00Z")


def test_crash_loop_names_the_failing_container_not_the_healthy_sidecar() -> None:
    pod = pod_facts(load_object("pod-crashloop"))
    container = pick_container(pod)
    assert container is not None
    facts = pod_fact_map(pod, container, NOW)
    assert facts["container"] == "app"
    assert facts["waiting_reason"] == "CrashLoopBackOff"
    assert "back-off 5m0s restarting failed container=app" in facts["waiting_message"]
    assert facts["last_terminated_reason"] == "Error"
    assert facts["exit_code"] == 1
    assert facts["restart_count"] == 7
    assert facts["pod_phase"] == "Running"
    assert facts["pod_qos"] == "Burstable"
    assert facts["node"] == "worker-1"
    assert "Ready=False (ContainersNotReady)" in facts["pod_conditions"]
    assert facts["pod_deleting"] is False
    assert wants_log_tail("BackOff", container)


def test_the_event_field_path_picks_the_container() -> None:
    pod = pod_facts(load_object("pod-crashloop"))
    container = pick_container(pod, "spec.containers{proxy}")
    assert container is not None
    assert container.name == "proxy"
    assert pod_fact_map(pod, container, NOW)["container_state"] == "running"
    # A fieldPath naming a container the Pod no longer has falls back to the worst one.
    fallback = pick_container(pod, "spec.containers{gone}")
    assert fallback is not None
    assert fallback.name == "app"


def test_oom_killed_shows_reason_and_exit_code_137_while_running_again() -> None:
    pod = pod_facts(load_object("pod-oomkilled"))
    container = pick_container(pod)
    assert container is not None
    facts = pod_fact_map(pod, container, NOW)
    assert facts["last_terminated_reason"] == "OOMKilled"
    assert facts["exit_code"] == 137
    assert facts["restart_count"] == 3
    assert facts["container_state"] == "running"
    assert "waiting_reason" not in facts
    assert facts["pod_qos"] == "Guaranteed"
    assert facts["pod_conditions"] == []
    assert wants_log_tail("OOMKilling", container)


def test_image_pull_back_off_is_not_a_crash_and_wants_no_log() -> None:
    pod = pod_facts(load_object("pod-imagepull"))
    container = pick_container(pod)
    assert container is not None
    facts = pod_fact_map(pod, container, NOW)
    assert facts["container"] == "report"  # not the completed init container
    assert facts["waiting_reason"] == "ImagePullBackOff"
    assert "registry.example.com/report:v2" in facts["waiting_message"]
    assert facts["pod_phase"] == "Pending"
    assert "exit_code" not in facts
    # The kubelet's event reason for image pull back-off is also "BackOff".
    assert not wants_log_tail("BackOff", container)


def test_init_container_failure_is_found_by_field_path() -> None:
    pod = pod_facts(load_object("pod-imagepull"))
    init = pick_container(pod, "spec.initContainers{fetch-config}")
    assert init is not None
    assert init.init
    assert init.last_terminated_reason == "Completed"
    assert init.exit_code == 0


def test_pod_stuck_terminating_past_its_grace_period() -> None:
    pod = pod_facts(load_object("pod-terminating-stuck"))
    facts = pod_fact_map(pod, pick_container(pod), NOW)
    assert facts["pod_deleting"] is True
    assert facts["pod_terminating_stuck"] is True
    # deletionTimestamp 02:00:30 (request time + 30 s grace); now 02:12:00.
    assert facts["pod_terminating_overdue_seconds"] == 690


def test_pod_within_its_grace_period_is_deleting_but_not_stuck() -> None:
    pod = pod_facts(load_object("pod-terminating-stuck"))
    facts = pod_fact_map(pod, None, parse_time("2027-01-15T02:00:10Z"))
    assert facts["pod_deleting"] is True
    assert facts["pod_terminating_stuck"] is False
    assert "pod_terminating_overdue_seconds" not in facts


def test_evicted_bare_pod_has_reason_and_signal() -> None:
    pod = pod_facts(load_object("pod-bare"))
    assert pod.controller is None
    facts = pod_fact_map(pod, pick_container(pod), NOW)
    assert facts["pod_phase"] == "Failed"
    assert facts["pod_reason"] == "Evicted"
    assert facts["exit_code"] == 137
    assert facts["signal"] == 9
    # It never restarted: there is no previous container to read a log from.
    container = pick_container(pod)
    assert container is not None
    assert not wants_log_tail("Error", container)


def test_controller_refs_follow_the_owner_chains() -> None:
    assert controller_ref(load_object("pod-crashloop")) == OwnerRef(
        "ReplicaSet", "apps/v1", "web-7d9f8c6b5"
    )
    assert owner_facts(load_object("replicaset-web")).controller == OwnerRef(
        "Deployment", "apps/v1", "web"
    )
    assert owner_facts(load_object("job-nightly-report")).controller == OwnerRef(
        "CronJob", "batch/v1", "nightly-report"
    )
    assert owner_facts(load_object("deployment-web")).controller is None
    assert controller_ref(load_object("pod-oomkilled")) == OwnerRef("StatefulSet", "apps/v1", "db")
    assert controller_ref(load_object("pod-terminating-stuck")) == OwnerRef(
        "DaemonSet", "apps/v1", "node-exporter"
    )


def test_an_owner_reference_without_controller_true_is_not_the_controller() -> None:
    pod = load_object("pod-crashloop")
    pod["metadata"]["ownerReferences"][0]["controller"] = False
    assert controller_ref(pod) is None


def test_owner_fact_map_names_the_top_of_the_chain() -> None:
    chain = [OwnerRef("ReplicaSet", "apps/v1", "web-7d9f8c6b5"), OwnerRef("Deployment", "", "web")]
    assert owner_fact_map(chain) == {
        "owner_kind": "Deployment",
        "owner_name": "web",
        "workload": "Deployment/web",
        "owner_chain": ["ReplicaSet/web-7d9f8c6b5", "Deployment/web"],
    }
    assert owner_fact_map([]) == {}


def test_not_ready_node_with_pressure_cordon_and_taints() -> None:
    facts = node_fact_map(node_facts(load_object("node-notready-tainted")))
    assert facts == {
        "node": "worker-3",
        "node_ready": "False",
        "node_ready_reason": "KubeletNotReady",
        "node_conditions": ["NotReady", "MemoryPressure"],
        "node_unschedulable": True,
        "node_taints": [
            "node.kubernetes.io/not-ready:NoSchedule",
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule",
            "dedicated=gpu:NoExecute",
        ],
    }


def test_healthy_node() -> None:
    facts = node_fact_map(node_facts(load_object("node-ready")))
    assert facts["node_ready"] == "True"
    assert facts["node_conditions"] == []
    assert facts["node_taints"] == []
    assert facts["node_unschedulable"] is False
    assert "node_ready_reason" not in facts


def test_node_without_status_is_unknown_not_ready() -> None:
    facts = node_facts({"metadata": {"name": "n"}})
    assert facts.ready == "Unknown"
    assert facts.problems == ("NotReady",)


def test_facts_survive_missing_and_odd_fields() -> None:
    pod = pod_facts({"metadata": {"name": "p", "deletionTimestamp": "not a time"}, "status": {}})
    assert pod.phase == ""
    assert pod.deletion_time is None
    assert pick_container(pod) is None
    assert pod_fact_map(pod, None, NOW)["pod_deleting"] is False
