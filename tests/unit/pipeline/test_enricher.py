"""The Enricher: facts on alerts, owner chains, partial results at the deadline, bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.config.routing import RouteConfig
from kube_event_watcher.pipeline.enrich import EDGE_FACTS_TTL, Enricher
from kube_event_watcher.pipeline.normalize import parse_time
from kube_event_watcher.pipeline.route import Router
from tests.factories import make_alert
from tests.fixtures import FakeLookups


class Deadline:
    """An injected sleep for the deadline: it passes only when the test says so."""

    def __init__(self) -> None:
        self.fire = asyncio.Event()
        self.requested: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        await self.fire.wait()


alert = make_alert


def enricher(
    lookups: FakeLookups, deadline: Deadline | None = None, **config: Any
) -> tuple[Enricher, FakeClock]:
    clock = FakeClock(parse_time("2027-01-15T02:12:00Z"))
    cfg = EnrichmentConfig.model_validate(config)
    return Enricher({"prod": lookups}, cfg, clock, sleep=deadline or Deadline()), clock


async def test_crash_looping_pod_gets_workload_node_and_container_facts() -> None:
    lookups = FakeLookups()
    stage, _ = enricher(lookups)
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    facts = out.facts
    assert facts["enrichment"] == "complete"
    assert facts["workload"] == "Deployment/web"
    assert (facts["owner_kind"], facts["owner_name"]) == ("Deployment", "web")
    assert facts["owner_chain"] == ["ReplicaSet/web-7d9f8c6b5", "Deployment/web"]
    assert facts["node"] == "worker-1"
    assert facts["node_ready"] == "True"
    assert facts["container"] == "app"
    assert facts["waiting_reason"] == "CrashLoopBackOff"
    assert facts["exit_code"] == 1
    assert facts["restart_count"] == 7
    assert "log_tail" not in facts  # off unless enabled
    assert lookups.calls["log"] == 0


async def test_the_input_alert_is_left_alone_and_its_facts_kept() -> None:
    stage, _ = enricher(FakeLookups())
    original = alert("Pod", "web-7d9f8c6b5-x2x9k", "shop", facts={"team": "shop"})
    out = await stage.enrich(original)
    assert out is not original
    assert original.facts == {"team": "shop"}
    assert out.facts["team"] == "shop"
    assert out.key == original.key


async def test_cron_job_pod_in_image_pull_back_off() -> None:
    stage, _ = enricher(FakeLookups(), log_tail={"enabled": True})
    out = await stage.enrich(alert("Pod", "nightly-report-28765432-abcde", "batch-jobs"))
    assert out.facts["workload"] == "CronJob/nightly-report"
    assert out.facts["owner_chain"] == ["Job/nightly-report-28765432", "CronJob/nightly-report"]
    assert out.facts["waiting_reason"] == "ImagePullBackOff"
    assert "log_tail" not in out.facts


async def test_statefulset_pod_on_a_vanished_node_is_partial_but_keeps_what_is_known() -> None:
    lookups = FakeLookups()
    stage, _ = enricher(lookups)
    out = await stage.enrich(alert("Pod", "db-0", "shop", reason="OOMKilling"))
    assert out.facts["enrichment"] == "partial: Node worker-2 not found"
    assert out.facts["workload"] == "StatefulSet/db"
    assert out.facts["last_terminated_reason"] == "OOMKilled"
    assert out.facts["exit_code"] == 137
    assert out.facts["node"] == "worker-2"
    # A StatefulSet has no owner we follow: it is named without a request.
    assert lookups.calls["StatefulSet"] == 0


async def test_pod_stuck_terminating_on_a_not_ready_node() -> None:
    stage, _ = enricher(FakeLookups())
    out = await stage.enrich(alert("Pod", "node-exporter-q7w2z", "monitoring", reason="Killing"))
    facts = out.facts
    assert facts["enrichment"] == "complete"
    assert facts["workload"] == "DaemonSet/node-exporter"
    assert facts["pod_terminating_stuck"] is True
    assert facts["node_ready"] == "False"
    assert facts["node_conditions"] == ["NotReady", "MemoryPressure"]
    assert facts["node_unschedulable"] is True
    assert "dedicated=gpu:NoExecute" in facts["node_taints"]


async def test_bare_pod_is_its_own_workload() -> None:
    stage, _ = enricher(FakeLookups())
    out = await stage.enrich(alert("Pod", "debug-shell", "shop", reason="Evicted"))
    assert out.facts["workload"] == "Pod/debug-shell"
    assert "owner_kind" not in out.facts
    assert out.facts["pod_reason"] == "Evicted"


async def test_deleted_pod_says_so() -> None:
    stage, _ = enricher(FakeLookups())
    out = await stage.enrich(alert("Pod", "gone", "shop"))
    assert out.facts["enrichment"] == "partial: Pod shop/gone not found (deleted?)"


async def test_node_event_gets_node_facts() -> None:
    stage, _ = enricher(FakeLookups())
    out = await stage.enrich(alert("Node", "worker-3", reason="NodeNotReady"))
    assert out.facts["enrichment"] == "complete"
    assert out.facts["node"] == "worker-3"
    assert out.facts["node_ready"] == "False"
    assert out.facts["node_ready_reason"] == "KubeletNotReady"


async def test_replicaset_event_names_its_deployment() -> None:
    stage, _ = enricher(FakeLookups())
    out = await stage.enrich(
        alert("ReplicaSet", "web-7d9f8c6b5", "shop", reason="FailedCreate", api_version="apps/v1")
    )
    assert out.facts["workload"] == "Deployment/web"
    assert out.facts["enrichment"] == "complete"


async def test_deployment_event_needs_no_lookup() -> None:
    lookups = FakeLookups()
    stage, _ = enricher(lookups)
    out = await stage.enrich(alert("Deployment", "web", "shop", reason="ScalingReplicaSet"))
    assert out.facts["workload"] == "Deployment/web"
    assert sum(lookups.calls.values()) == 0


async def test_a_replicaset_owned_by_a_custom_controller_ends_the_chain_there() -> None:
    lookups = FakeLookups()
    rs = lookups.objects[("ReplicaSet", "shop", "web-7d9f8c6b5")]
    rs["metadata"]["ownerReferences"][0].update(apiVersion="argoproj.io/v1alpha1", kind="Rollout")
    stage, _ = enricher(lookups)
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert out.facts["workload"] == "Rollout/web"
    assert out.facts["enrichment"] == "complete"


async def test_other_kinds_are_skipped_and_say_so() -> None:
    lookups = FakeLookups()
    stage, _ = enricher(lookups)
    out = await stage.enrich(alert("PersistentVolumeClaim", "data", "shop"))
    assert out.facts == {"enrichment": "skipped: no lookups for kind PersistentVolumeClaim"}
    other = await stage.enrich(alert("Pod", "p", "shop", cluster="staging"))
    assert other.facts == {"enrichment": "skipped: no API access for cluster staging"}
    assert sum(lookups.calls.values()) == 0


async def test_disabled_enrichment_returns_the_alert_as_is() -> None:
    lookups = FakeLookups()
    stage, _ = enricher(lookups, enabled=False)
    original = alert("Pod", "web-7d9f8c6b5-x2x9k", "shop")
    assert await stage.enrich(original) is original
    assert sum(lookups.calls.values()) == 0


async def test_a_failing_lookup_makes_the_facts_partial_with_the_reason() -> None:
    lookups = FakeLookups()
    lookups.fail["Node"] = RuntimeError("forbidden: get nodes (cluster-wide)")
    stage, _ = enricher(lookups)
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert out.facts["enrichment"] == (
        "partial: Node worker-1: forbidden: get nodes (cluster-wide)"
    )
    assert out.facts["workload"] == "Deployment/web"


async def test_a_lookup_that_never_returns_lets_the_alert_go_at_the_deadline() -> None:
    lookups = FakeLookups()
    lookups.hang.add("Node")
    lookups.hang.add("ReplicaSet")
    deadline = Deadline()
    stage, _ = enricher(lookups, deadline, api_budget={"deadline": "1500ms"})
    task = asyncio.create_task(stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop")))
    for kind in ("Node", "ReplicaSet"):
        await lookups.started.setdefault(kind, asyncio.Event()).wait()
    assert not task.done()
    deadline.fire.set()
    out = await task
    assert deadline.requested == [1.5]
    assert out.facts["enrichment"] == (
        "partial: deadline 1.5s passed waiting for Node worker-1, ReplicaSet shop/web-7d9f8c6b5"
    )
    # What was known by then is there: the Pod's facts and the chain as far as it got.
    assert out.facts["waiting_reason"] == "CrashLoopBackOff"
    assert out.facts["owner_chain"] == ["ReplicaSet/web-7d9f8c6b5"]
    assert out.facts["node"] == "worker-1"
    assert "node_ready" not in out.facts
    await stage.close()


async def test_a_hanging_pod_lookup_still_lets_the_alert_go() -> None:
    lookups = FakeLookups()
    lookups.hang.add("Pod")
    deadline = Deadline()
    deadline.fire.set()
    stage, _ = enricher(lookups, deadline)
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert out.facts["enrichment"].startswith("partial: deadline 2s passed waiting for")
    assert stage.partial == 1
    await stage.close()


async def test_waiting_for_a_slot_counts_against_the_deadline() -> None:
    lookups = FakeLookups()
    lookups.hang.add("Pod")
    first_deadline, second_deadline = Deadline(), Deadline()
    deadlines = iter([first_deadline, second_deadline])

    async def sleep(seconds: float) -> None:
        await next(deadlines)(seconds)

    clock = FakeClock()
    cfg = EnrichmentConfig.model_validate({"api_budget": {"concurrency": 1}})
    stage = Enricher({"prod": lookups}, cfg, clock, sleep=sleep)
    first = asyncio.create_task(stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop")))
    await lookups.started.setdefault("Pod", asyncio.Event()).wait()
    second = asyncio.create_task(stage.enrich(alert("Node", "worker-1")))
    await asyncio.sleep(0)
    second_deadline.fire.set()
    out = await second
    assert out.facts["enrichment"] == (
        "partial: deadline 2s passed waiting for a free enrichment slot"
    )
    assert lookups.calls["Node"] == 0
    first_deadline.fire.set()
    await first
    await stage.close()


async def test_alerts_about_one_pod_share_one_lookup_of_each_object() -> None:
    lookups = FakeLookups()
    stage, clock = enricher(lookups)
    alerts = [alert("Pod", "web-7d9f8c6b5-x2x9k", "shop") for _ in range(25)]
    out = await stage.enrich_all(alerts)
    assert all(a.facts["enrichment"] == "complete" for a in out)
    assert dict(lookups.calls) == {"Pod": 1, "ReplicaSet": 1, "Node": 1}
    clock.advance(61)  # past the Pod TTL, within the owner and Node TTLs
    await stage.enrich(alerts[0])
    assert dict(lookups.calls) == {"Pod": 2, "ReplicaSet": 1, "Node": 1}


LOG = (
    "starting app v1.4.2\n"
    "connecting to postgres://app:s3cr3t-pw@db:5432/shop\n"
    "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123\n"
    "panic: DB_PASSWORD=hunter22 rejected\n"
)


async def test_log_tail_of_a_crash_is_redacted_and_fetched_once_per_restart() -> None:
    lookups = FakeLookups()
    lookups.logs[("shop", "web-7d9f8c6b5-x2x9k", "app")] = LOG
    stage, _ = enricher(lookups, log_tail={"enabled": True, "lines": 3})
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    tail = out.facts["log_tail"]
    assert "starting app" not in tail  # only the last 3 lines
    assert "s3cr3t-pw" not in tail
    assert "abcdefghijklmnopqrstuvwxyz0123" not in tail
    assert "hunter22" not in tail
    assert "panic: DB_PASSWORD=****" in tail
    await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert lookups.calls["log"] == 1


async def test_log_tail_is_capped_to_max_bytes_keeping_the_end() -> None:
    lookups = FakeLookups()
    lookups.logs[("shop", "web-7d9f8c6b5-x2x9k", "app")] = "".join(
        f"line {i} " + "x" * 60 + "\n" for i in range(200)
    )
    stage, _ = enricher(lookups, log_tail={"enabled": True, "lines": 200, "max_bytes": 512})
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    tail = out.facts["log_tail"]
    assert len(tail.encode()) <= 512
    assert tail.startswith("[…]\n")
    assert tail.rstrip().endswith("line 199 " + "x" * 60)


async def test_a_crash_without_log_lines_says_why() -> None:
    """A kubelet that keeps no previous log (400, e.g. kwok's) or an empty log: the alert
    says so instead of leaving the log out silently."""
    lookups = FakeLookups()
    stage, _ = enricher(lookups, log_tail={"enabled": True})
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert "log_tail" not in out.facts
    assert "no log of the previous run" in out.facts["log_tail_unavailable"]
    assert out.facts["enrichment"] == "complete"
    lookups.logs[("shop", "web-7d9f8c6b5-x2x9k", "app")] = ""
    stage, _ = enricher(lookups, log_tail={"enabled": True})
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert out.facts["log_tail_unavailable"] == "the previous run wrote no log"


async def test_no_log_tail_on_resolve_or_when_it_never_restarted() -> None:
    lookups = FakeLookups()
    stage, _ = enricher(lookups, log_tail={"enabled": True})
    await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop", status="resolved"))
    await stage.enrich(alert("Pod", "debug-shell", "shop", reason="Error"))
    assert lookups.calls["log"] == 0


NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "shop", "labels": {"team": "payments", "tier": "prod"}},
}


async def test_namespace_labels_are_a_fact_to_route_on_when_asked_for() -> None:
    lookups = FakeLookups([*FakeLookups().objects.values(), NAMESPACE])
    stage, _ = enricher(lookups, namespace_labels=True)
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert out.facts["namespace_labels"] == {"team": "payments", "tier": "prod"}
    assert out.facts["enrichment"] == "complete"
    await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop", notification_id="again"))
    assert lookups.calls["Namespace"] == 1  # cached (5 min by default)
    routes = Router(
        RouteConfig.model_validate(
            {
                "receiver": "oncall",
                "routes": [
                    {"matchers": ['facts.namespace_labels.team="payments"'], "receiver": "payments"}
                ],
            }
        ),
        ["oncall", "payments"],
    )
    assert routes.receivers(out) == ("payments",)


async def test_namespace_labels_cost_nothing_unless_enabled() -> None:
    lookups = FakeLookups([*FakeLookups().objects.values(), NAMESPACE])
    stage, _ = enricher(lookups)
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert "namespace_labels" not in out.facts
    assert lookups.calls["Namespace"] == 0


async def test_a_missing_namespace_is_named_and_the_rest_kept() -> None:
    stage, _ = enricher(FakeLookups(), namespace_labels=True)
    out = await stage.enrich(alert("Pod", "web-7d9f8c6b5-x2x9k", "shop"))
    assert "Namespace shop not found" in out.facts["enrichment"]
    assert out.facts["workload"] == "Deployment/web"


async def test_a_cluster_without_api_access_gets_what_its_edge_said_until_it_goes_stale() -> None:
    stage, clock = enricher(FakeLookups())
    pod = alert("Pod", "web-1", "shop", cluster="east")
    edge_said = {"workload": "Deployment/web", "exit_code": 137, "enrichment": "complete"}
    stage.remember_edge_facts("east", pod.regarding, edge_said)
    out = await stage.enrich(pod)
    assert out.facts == {
        "workload": "Deployment/web",
        "exit_code": 137,
        "enrichment": "by the edge of cluster east: complete",
    }
    other = await stage.enrich(alert("Pod", "web-2", "shop", cluster="east"))
    assert other.facts == {"enrichment": "skipped: no API access for cluster east"}
    clock.advance(EDGE_FACTS_TTL + 1)
    stale = await stage.enrich(pod)
    assert stale.facts == {"enrichment": "skipped: no API access for cluster east"}
