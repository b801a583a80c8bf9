"""Fleet mode end to end: edge instances watch the real kube-apiserver (one per cluster,
here two namespaces named as two clusters) and publish occurrences to a real stream (Apache
Kafka 4.4, or NATS JetStream 2.15); a central instance reads the stream, groups, routes and
delivers. Kills with SIGKILL of the central instance and of an edge, mid-stream, lose and
repeat nothing as the central's receiver counts (its `file` receiver drops ids it finds in
its tail on start, as a receiver with idempotency keys does)."""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.doctor import run_doctor
from kube_event_watcher.notifiers.base import Delivered
from kube_event_watcher.notifiers.registry import build_notifier, config_models, notifier_types
from kube_event_watcher.pipeline.model import Alert
from tests.e2e.controlplane.cluster import ControlPlane
from tests.e2e.engines.kafka.broker import KafkaBroker
from tests.e2e.engines.nats.server import NatsServer
from tests.e2e.test_enrichment_e2e import (
    alert_from_real_event,
    crash_looping_workload,
    not_ready_node,
)
from tests.e2e.test_ha_failover import Producer, Replica, event_uids, wait_until
from tests.e2e.test_kafka import create_topic
from tests.factories import occurrence
from tests.support.process import records
from tests.support.scenarios import unique_namespace

pytestmark = pytest.mark.timeout(300)

CLUSTERS = ("east", "west")


class Bus(Protocol):
    engine: str

    def edge_receiver(self) -> dict[str, Any]: ...

    def consume(self) -> dict[str, Any]: ...


def publish(bus: Bus, names: list[str]) -> None:
    """Occurrences published straight to the stream, as an edge's receiver does."""
    config = {"name": "edge", "records": "occurrences", **bus.edge_receiver()}
    types = notifier_types()
    notifier = build_notifier(types[config["type"]].config_model.model_validate(config), types)
    alerts = [Alert.from_occurrence(occurrence(name, at=time.time())) for name in names]

    async def send() -> None:
        await notifier.start()
        try:
            deadline = time.monotonic() + 30
            while not isinstance(result := await notifier.send_many(alerts), Delivered):
                assert time.monotonic() < deadline, result  # NATS: connecting meanwhile
                await asyncio.sleep(0.05)
        finally:
            await notifier.close()

    asyncio.run(send())


@dataclass
class KafkaBus:
    broker: KafkaBroker
    topic: str
    engine: str = "kafka"

    def edge_receiver(self) -> dict[str, Any]:
        return {"type": "kafka", **self._connection(), "timeout": "3s"}

    def consume(self) -> dict[str, Any]:
        return {"type": "kafka", **self._connection()}

    def _connection(self) -> dict[str, Any]:
        return {"bootstrap_servers": [self.broker.bootstrap], "topic": self.topic}


@dataclass
class NatsBus:
    server: NatsServer
    stream: str
    engine: str = "nats"

    def edge_receiver(self) -> dict[str, Any]:
        return {
            "type": "nats",
            **self._connection(),
            "create_stream": {"duplicate_window": "10m"},
        }

    def consume(self) -> dict[str, Any]:
        # The central starts first here: it creates the stream the edges will publish to.
        return {"type": "nats", **self._connection(), "create_stream": {"duplicate_window": "10m"}}

    def _connection(self) -> dict[str, Any]:
        subject = f"kew.{self.stream.lower()}.{{cluster}}"
        return {"servers": [self.server.url], "subject": subject, "stream": self.stream}


@pytest.fixture(params=["kafka", "nats"])
def bus(request: pytest.FixtureRequest) -> Bus:
    name = f"fleet{unique_namespace()[4:]}"
    if request.param == "kafka":
        broker: KafkaBroker = request.getfixturevalue("up")
        return KafkaBus(broker, asyncio.run(create_topic(broker, name)))
    server: NatsServer = request.getfixturevalue("running")
    return NatsBus(server, name.upper().replace("-", ""))


@dataclass
class Fleet:
    plane: ControlPlane
    namespaces: dict[str, str]  # cluster -> the namespace its edge watches
    edges: dict[str, Replica]
    central: Replica
    alerts: Path  # the central instance's file receiver

    def start_edge(self, cluster: str) -> None:
        self.edges[cluster].start(self.plane.kubeconfig)
        wait_until(lambda: self.edges[cluster].logged("listed"), 30, f"the {cluster} edge to list")

    def start_central(self) -> None:
        self.central.start(self.plane.kubeconfig)
        wait_until(lambda: self.central.logged("reading occurrences"), 60, "the central to read")


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def make_fleet(
    plane: ControlPlane,
    bus: Bus,
    tmp_path: Path,
    aggregation: dict[str, Any],
    edge_enrichment: bool = False,
    **fleet_keys: Any,
) -> Fleet:
    namespaces = {cluster: unique_namespace() for cluster in CLUSTERS}
    edges = {}
    for cluster, namespace in namespaces.items():
        plane.create_namespace(namespace)
        home = tmp_path / f"edge-{cluster}"
        config = {
            "clusters": [{"name": cluster, "kubeconfig": str(plane.kubeconfig)}],
            "sources": [{"namespaces": [namespace]}],
            "receivers": [
                {
                    "name": "fleet",
                    "records": "occurrences",
                    **bus.edge_receiver(),
                    "delivery": {"retry_initial": "200ms", "retry_max": "1s"},
                }
            ],
            "enrichment": {"enabled": edge_enrichment},
            "state": {"backend": "file", "path": str(home / "state"), "commit_interval": "100ms"},
            "ops": {"listen": "127.0.0.1:0"},
            "log": {"format": "json"},
        }
        path = _write(home / "config.yaml", config)
        edges[cluster] = Replica(f"edge-{cluster}", path, home / "daemon.log", home / "none")
    home = tmp_path / "central"
    alerts = home / "alerts.jsonl"
    central_config = {
        "fleet": {"consume": bus.consume(), **fleet_keys},
        "receivers": [{"name": "archive", "type": "file", "path": str(alerts)}],
        "aggregation": aggregation,
        "enrichment": {"enabled": edge_enrichment},  # on (the default): uses the edges' facts
        "state": {"backend": "file", "path": str(home / "state"), "commit_interval": "100ms"},
        "ops": {"listen": "127.0.0.1:0"},
        "log": {"format": "json"},
    }
    path = _write(home / "config.yaml", central_config)
    central = Replica("central", path, home / "daemon.log", alerts)
    return Fleet(plane, namespaces, edges, central, alerts)


@pytest.fixture
def fleet_of(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Any]:
    made: list[Fleet] = []

    def make(bus: Bus, aggregation: dict[str, Any], home: str = "", **keys: Any) -> Fleet:
        fleet = make_fleet(control_plane, bus, tmp_path / home, aggregation, **keys)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        for replica in [*fleet.edges.values(), fleet.central]:
            replica.stop()


def crash_loop(plane: ControlPlane, namespace: str, pods: int) -> None:
    """BackOff events of `pods` Pods of one Deployment's ReplicaSet, as the kubelet says it."""
    for i in range(pods):
        pod = f"web-7d4b9c5f8-{i:05d}"
        ref = {"kind": "Pod", "namespace": namespace, "name": pod, "uid": str(uuid.uuid4())}
        plane.create_event(
            namespace, f"{pod}.{i}", ref, "BackOff", "Back-off restarting failed container"
        )


def test_two_clusters_edges_feed_one_central_that_groups_each_crash_loop_into_one_message(
    bus: Bus, fleet_of: Any
) -> None:
    fleet: Fleet = fleet_of(bus, {"group": {"by": ["cluster", "namespace", "owner"], "wait": "4s"}})
    fleet.start_central()
    for cluster in CLUSTERS:
        fleet.start_edge(cluster)
    for namespace in fleet.namespaces.values():
        crash_loop(fleet.plane, namespace, 5)
    wait_until(lambda: len(records(fleet.alerts)) >= 2, 60, "a notification per cluster")
    # Then a sentinel of its own group: its notification comes one group wait after it, by
    # when any further message about the crash loops would have come before it.
    east = fleet.namespaces["east"]
    ref = {"kind": "Service", "namespace": east, "name": "db", "uid": str(uuid.uuid4())}
    fleet.plane.create_event(east, "sentinel", ref, "Sentinel", "last")
    wait_until(lambda: len(records(fleet.alerts)) >= 3, 60, "the sentinel's notification")
    *crash_loops, sentinel = records(fleet.alerts)
    assert sentinel["reason"] == "Sentinel"
    assert sorted(r["cluster"] for r in crash_loops) == sorted(CLUSTERS)
    for alert in crash_loops:
        assert alert["namespace"] == fleet.namespaces[alert["cluster"]]
        assert alert["reason"] == "BackOff"
        # One message per cluster for its five Pods, named by their workload.
        assert alert["group"]["member_count"] == 5, alert["group"]
        assert alert["group"]["workloads"] == ["web"], alert["group"]
    assert not fleet.central.logged("malformed occurrence record skipped")


def test_kills_of_the_central_instance_and_of_an_edge_mid_stream_lose_and_repeat_nothing(
    bus: Bus, fleet_of: Any
) -> None:
    fleet: Fleet = fleet_of(bus, {"enabled": False})
    fleet.start_central()
    for cluster in CLUSTERS:
        fleet.start_edge(cluster)
    producers = [Producer(fleet.plane, namespace) for namespace in fleet.namespaces.values()]
    with producers[0], producers[1]:
        wait_until(lambda: len(records(fleet.alerts)) >= 20, 60, "the first alerts")
        assert fleet.central.process is not None
        fleet.central.process.send_signal(signal.SIGKILL)
        fleet.central.process.wait()
        # The edges publish on meanwhile (the stream holds it): 20 events while it is down.
        down_at = sum(len(p.uids) for p in producers)
        wait_until(
            lambda: sum(len(p.uids) for p in producers) >= down_at + 20, 30, "events meanwhile"
        )
        fleet.start_central()
        wait_until(lambda: fleet.central.logged("resuming the occurrence stream"), 30, "resume")
        east = fleet.edges["east"]
        wait_until(lambda: len(records(fleet.alerts)) >= 60, 60, "more alerts")
        assert east.process is not None
        east.process.send_signal(signal.SIGKILL)
        east.process.wait()
        fleet.start_edge("east")
        wait_until(lambda: len(records(fleet.alerts)) >= 100, 60, "alerts after both kills")
    created = [uid for producer in producers for uid in producer.uids]
    wait_until(lambda: set(event_uids(fleet.alerts)) >= set(created), 60, "every event to arrive")
    delivered = collections.Counter(event_uids(fleet.alerts))
    assert [uid for uid, n in delivered.items() if n > 1] == []
    assert set(delivered) == set(created)
    by_cluster = collections.Counter(r["cluster"] for r in records(fleet.alerts))
    assert by_cluster == {
        cluster: len(p.uids) for cluster, p in zip(fleet.namespaces, producers, strict=True)
    }
    # The central's own count, since its restart: what it read, nothing malformed.
    port = fleet.central.ops_ports()[-1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    read = re.search(r'kew_fleet_records_total\{[^}]*result="read"[^}]*\} (\d+)', metrics)
    assert read is not None and int(read.group(1)) > 0, metrics[-2000:]
    assert re.search(r'kew_fleet_records_total\{[^}]*result="malformed"[^}]*\} 0', metrics)


def test_a_central_starts_from_now_or_its_age_limit_and_a_restart_continues_exactly(
    bus: Bus, fleet_of: Any
) -> None:
    publish(bus, ["before-1", "before-2", "before-3"])
    fleet: Fleet = fleet_of(bus, {"enabled": False})
    fleet.start_central()
    assert fleet.central.process is not None
    fleet.central.process.send_signal(signal.SIGTERM)  # before it read anything
    assert fleet.central.process.wait(30) == 0
    publish(bus, ["after-1", "after-2"])
    fleet.start_central()
    wait_until(lambda: len(records(fleet.alerts)) >= 2, 60, "what came after the first start")
    # A first start reads from its start on (startup_max_age 0); the restart continued from
    # where that start was, not from its own start (which would miss after-1 and after-2).
    publish(bus, ["after-3"])
    wait_until(lambda: len(records(fleet.alerts)) >= 3, 60, "what came after the restart")
    assert [r["regarding"]["name"] for r in records(fleet.alerts)] == [
        "after-1",
        "after-2",
        "after-3",
    ]
    # Another central, first started with an age limit of an hour: everything.
    back: Fleet = fleet_of(bus, {"enabled": False}, home="hour", startup_max_age="1h")
    back.start_central()
    wait_until(lambda: len(records(back.alerts)) >= 6, 60, "everything of the last hour")
    assert sorted(r["regarding"]["name"] for r in records(back.alerts)) == sorted(
        ["before-1", "before-2", "before-3", "after-1", "after-2", "after-3"]
    )


def test_the_edges_facts_about_a_pod_reach_a_central_that_cannot_reach_the_cluster(
    bus: Bus, fleet_of: Any
) -> None:
    group = {"group": {"by": ["cluster", "namespace", "owner"], "wait": "1s"}}
    fleet: Fleet = fleet_of(bus, group, edge_enrichment=True)
    namespace = fleet.namespaces["east"]
    node = f"node-{uuid.uuid4().hex[:6]}"
    not_ready_node(fleet.plane, node)
    pod = crash_looping_workload(fleet.plane, namespace, node)
    fleet.start_central()
    fleet.start_edge("east")
    alert_from_real_event(fleet.plane, pod)
    wait_until(lambda: records(fleet.alerts), 60, "the crash loop's notification")
    (alert,) = records(fleet.alerts)
    facts = alert["facts"]
    # Looked up by the edge on its own cluster's API, carried in the occurrence record.
    assert facts["enrichment"] == "by the edge of cluster east: complete", facts
    assert facts["workload"] == "Deployment/web"
    assert (facts["last_terminated_reason"], facts["exit_code"]) == ("OOMKilled", 137)
    assert facts["node"] == node and facts["node_ready"] == "False"
    assert alert["likely_cause"]["code"] == "oom", alert.get("likely_cause")


def test_doctor_reads_the_central_streams_settings_and_says_what_is_wrong(bus: Bus) -> None:
    def doctor(consume: dict[str, Any]) -> list[Any]:
        loaded = parse_config({"fleet": {"consume": consume}}, "central", config_models(), env={})
        return asyncio.run(run_doctor(loaded))

    publish(bus, ["one"])  # the topic or stream exists, with a record
    consume = bus.consume()
    consume.pop("create_stream", None)  # the doctor must find it, not make it
    checks = doctor(consume)
    # No cluster checks (this central has no clusters), the stream's, the receiver's.
    assert [c.step for c in checks] == ["fleet", "receiver"], checks
    check = checks[0]
    assert check.status == "ok", check
    assert "1 records held" in check.seen[0] or "1 messages" in check.seen[0], check.seen
    missing = {
        **consume,
        **({"topic": "absent"} if bus.engine == "kafka" else {"stream": "ABSENT"}),
    }
    check = doctor(missing)[0]
    assert check.status == "fail", check
    assert "UnknownTopicOrPartition" in check.summary or "does not exist" in check.summary
