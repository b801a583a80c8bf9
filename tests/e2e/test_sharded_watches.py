"""Sharded watches (`ha.shards`) on the real kube-apiserver: three replicas split three
namespaces' watches by Leases, one shard each; one replica is killed with SIGKILL and its
shard moves to a survivor, which continues from the shard's own ConfigMap checkpoint.

As in test_ha_failover, every replica writes to one shared `file` receiver (which drops ids it
finds in its tail when it starts, as a receiver with idempotency keys does) and to a file of
its own: the shared file must hold every event of every namespace exactly once. The hand-overs
while replicas join are graceful (final checkpoint, lease released): they repeat nothing,
even before receiver-side dedup.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.controlplane.cluster import ControlPlane
from tests.e2e.test_ha_failover import Producer, Replica, event_uids, wait_until
from tests.support.scenarios import unique_namespace

LEASE = "kew-shards"
NAMES = ("replica-a", "replica-b", "replica-c")

pytestmark = pytest.mark.timeout(300)


@dataclass
class Fleet:
    plane: ControlPlane
    control: str  # where the Leases and ConfigMaps live
    watched: list[str]
    shared: Path
    replicas: dict[str, Replica]

    def shard_holders(self) -> dict[str, str]:
        """Shard Lease → holder ("" when free), from the API."""
        leases = self.plane.get(f"/apis/coordination.k8s.io/v1/namespaces/{self.control}/leases")
        return {
            item["metadata"]["name"]: str(item["spec"].get("holderIdentity") or "")
            for item in leases["items"]
            if item["metadata"]["name"].startswith(f"{LEASE}-")
            and "-member-" not in item["metadata"]["name"]
        }

    def spread(self) -> bool:
        """Every shard held, each replica running holds one."""
        holders = self.shard_holders()
        running = {n for n, r in self.replicas.items() if r.process and r.process.poll() is None}
        held = list(holders.values())
        return (
            len(holders) == len(self.watched)
            and all(held)
            and collections.Counter(held) == collections.Counter({n: 1 for n in running})
        )


@pytest.fixture
def fleet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Fleet]:
    control = unique_namespace()
    control_plane.create_namespace(control)
    watched = [unique_namespace() for _ in NAMES]
    for namespace in watched:
        control_plane.create_namespace(namespace)
    shared = tmp_path / "shared.jsonl"
    replicas = {}
    for name in NAMES:
        home = tmp_path / name
        home.mkdir()
        config = {
            # The events are made from before the first replica starts: all of them count.
            "sources": [{"namespaces": watched, "startup_max_age": "1h"}],
            "state": {
                "backend": "configmap",
                "namespace": control,
                "configmap": "kew-state",
                "commit_interval": "200ms",
                "path": str(home / "state"),
            },
            "ha": {
                "enabled": True,
                "shards": True,
                "namespace": control,
                "lease": LEASE,
                "lease_duration": "6s",
                "renew_deadline": "4s",
                "retry_period": "1s",
            },
            "receivers": [
                {"name": "shared", "type": "file", "path": str(shared)},
                {"name": "own", "type": "file", "path": str(home / "alerts.jsonl")},
            ],
            "aggregation": {"enabled": False},
            "enrichment": {"enabled": False},
            "ops": {"listen": "127.0.0.1:0"},
            "log": {"format": "json"},
        }
        path = home / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        replicas[name] = Replica(name, path, home / "daemon.log", home / "alerts.jsonl")
    fleet = Fleet(control_plane, control, watched, shared, replicas)
    try:
        yield fleet
    finally:
        for replica in replicas.values():
            replica.stop()


def test_three_replicas_split_the_shards_and_a_killed_ones_shard_moves_losing_nothing(
    fleet: Fleet,
) -> None:
    a, b, c = (fleet.replicas[name] for name in NAMES)
    kubeconfig = fleet.plane.kubeconfig
    with ExitStack() as producing:
        producers = [
            producing.enter_context(Producer(fleet.plane, namespace)) for namespace in fleet.watched
        ]
        a.start(kubeconfig)  # alone, it holds every shard
        wait_until(
            lambda: (
                set(fleet.shard_holders().values()) == {"replica-a"}
                and len(fleet.shard_holders()) == 3
            ),
            40,
            "replica-a to hold all three shards",
        )
        b.start(kubeconfig)
        c.start(kubeconfig)
        joined = time.monotonic()
        spread = wait_until(fleet.spread, 60, "one shard per replica")
        graceful = collections.Counter(event_uids(a.own_file) + event_uids(b.own_file))
        victim_name = fleet.shard_holders()  # which shard the victim holds
        victim = b
        [moving] = [lease for lease, holder in victim_name.items() if holder == victim.name]
        assert victim.process is not None
        victim.process.kill()
        victim.process.wait(10)
        killed = time.monotonic()
        moved = wait_until(
            lambda: fleet.shard_holders()[moving] in ("replica-a", "replica-c"),
            60,
            "the killed replica's shard to move to a survivor",
        )
        time.sleep(3)  # keep producing under the new holder
    created = [uid for producer in producers for uid in producer.uids]
    wait_until(
        lambda: set(event_uids(fleet.shared)) >= set(created), 60, "every event in the shared file"
    )
    time.sleep(1.0)  # let a late duplicate show itself, if there were one
    shared = collections.Counter(event_uids(fleet.shared))
    assert set(shared) == set(created), "an event was lost, or one never created appeared"
    assert {uid: n for uid, n in shared.items() if n > 1} == {}, "repeated in the shared file"
    # The joins moved two shards gracefully: nothing was sent twice up to the kill.
    assert {uid: n for uid, n in graceful.items() if n > 1} == {}
    own = collections.Counter(uid for replica in (a, b, c) for uid in event_uids(replica.own_file))
    print(
        f"\nsharded: spread over 3 replicas {spread - joined:.1f}s after two joined; the killed "
        f"replica's shard moved {moved - killed:.1f}s after the kill; {len(created)} events in "
        f"3 namespaces, shared file exactly once; re-sent before receiver dedup: "
        f"{sum(n - 1 for n in own.values())}"
    )
    for survivor in (a, c):
        assert survivor.process is not None and survivor.process.poll() is None
