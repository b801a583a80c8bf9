"""Two daemons with ha.enabled on the real kube-apiserver: one leads, the other stands by.

Events are created at a steady rate while the leader is killed with SIGKILL (or stopped with
SIGTERM); the standby takes the Lease over and continues from the ConfigMap checkpoint. Both
replicas write to one shared `file` receiver (which drops ids it finds in its own tail on start,
as a receiver with idempotency keys does) and to a file of their own: the shared file must hold
every event exactly once; the union of the own files shows how many alerts a fail-over repeats
before receiver-side dedup (printed, and for SIGTERM asserted to be none).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane.cluster import ControlPlane
from tests.support.process import records
from tests.support.scenarios import unique_namespace

LEASE = "kew-leader"
RATE = 10.0  # events per second while the leader is killed
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)


@dataclass
class Replica:
    name: str
    config: Path
    log: Path
    own_file: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, kubeconfig: Path) -> None:
        env = {**os.environ, "POD_NAME": self.name}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kube_event_watcher.cli",
                    "run",
                    "-c",
                    str(self.config),
                    "--kubeconfig",
                    str(kubeconfig),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                cwd=REPO,
            )

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, event: str) -> bool:
        return any(line.get("event") == event for line in self.log_lines())

    def ops_port(self) -> int:
        """The ops port of its first start."""
        ports = self.ops_ports()
        if not ports:
            raise AssertionError(f"{self.name} did not log its ops address")
        return ports[0]

    def ops_ports(self) -> list[int]:
        """The ops port of each start, in order (the log is kept across restarts)."""
        return [
            int(str(line["address"]).rsplit(":", 1)[1])
            for line in self.log_lines()
            if line.get("event") == "ops endpoint listening"
        ]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Producer:
    """Creates Warning events at a steady rate in a thread; remembers every uid."""

    plane: ControlPlane
    namespace: str
    uids: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def create(self) -> None:
        name = f"web-{len(self.uids)}.{uuid.uuid4().hex[:8]}"
        ref = {"kind": "Pod", "namespace": self.namespace, "name": "web", "apiVersion": "v1"}
        event = self.plane.create_event(self.namespace, name, ref, "BackOff", "back-off")
        self.uids.append(event["metadata"]["uid"])

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.create()
            next_at += 1 / RATE
            self.stop.wait(max(next_at - time.monotonic(), 0))

    def __enter__(self) -> Producer:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` every 20 ms; return when it turned true (monotonic), fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def event_uids(path: Path) -> list[str]:
    return [r["event"]["uid"] for r in records(path)]


@dataclass
class Pair:
    plane: ControlPlane
    namespace: str
    shared: Path
    a: Replica
    b: Replica

    def holder(self) -> str | None:
        try:
            lease = self.plane.get(
                f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{LEASE}"
            )
        except Exception:
            return None
        return str(lease["spec"].get("holderIdentity") or "")


@pytest.fixture
def pair(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Pair]:
    namespace = unique_namespace()
    control_plane.create_namespace(namespace)
    shared = tmp_path / "shared.jsonl"
    replicas = []
    for name in ("replica-a", "replica-b"):
        home = tmp_path / name
        home.mkdir()
        own = home / "alerts.jsonl"
        config = {
            "sources": [{"namespaces": [namespace]}],
            "state": {
                "backend": "configmap",
                "namespace": namespace,
                "configmap": "kew-state",
                "commit_interval": "200ms",
                "path": str(home / "state"),
            },
            "ha": {"enabled": True, "namespace": namespace, "lease": LEASE},
            "receivers": [
                {"name": "shared", "type": "file", "path": str(shared)},
                {"name": "own", "type": "file", "path": str(own)},
            ],
            "aggregation": {"enabled": False},
            "enrichment": {"enabled": False},
            "ops": {"listen": "127.0.0.1:0"},
            "log": {"format": "json"},
        }
        path = home / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        replicas.append(Replica(name, path, home / "daemon.log", own))
    pair = Pair(control_plane, namespace, shared, *replicas)
    try:
        yield pair
    finally:
        for replica in replicas:
            replica.stop()


def start_leader_and_standby(pair: Pair) -> None:
    kubeconfig = pair.plane.kubeconfig
    pair.a.start(kubeconfig)
    wait_until(lambda: pair.holder() == "replica-a", 30, "replica-a to take the lease")
    wait_until(lambda: pair.a.logged("listed"), 30, "replica-a to list")
    pair.b.start(kubeconfig)
    wait_until(
        lambda: pair.b.logged("standing by: the lease is held by another replica"),
        30,
        "replica-b to stand by",
    )
    # A standby is ready (a rollout must not hang on it) and says what it is.
    with urllib.request.urlopen(f"http://127.0.0.1:{pair.b.ops_port()}/readyz", timeout=5) as r:
        body = json.loads(r.read())
    assert r.status == 200 and body["role"] == "standby" and body["leader"] == "replica-a"


def check_delivered(pair: Pair, producer: Producer) -> collections.Counter[str]:
    created = list(producer.uids)
    wait_until(
        lambda: set(event_uids(pair.shared)) >= set(created), 60, "every event in the shared file"
    )
    time.sleep(1.0)  # let a late duplicate show itself, if there were one
    shared = collections.Counter(event_uids(pair.shared))
    assert set(shared) == set(created), "an event was lost, or one that was never created appeared"
    repeated = {uid: n for uid, n in shared.items() if n > 1}
    assert not repeated, f"repeated in the shared receiver: {repeated}"
    return collections.Counter(event_uids(pair.a.own_file) + event_uids(pair.b.own_file))


def stop_b_gracefully(pair: Pair) -> None:
    assert pair.b.process is not None
    pair.b.process.send_signal(signal.SIGTERM)
    assert pair.b.process.wait(30) == 0
    assert pair.holder() == "", "a leader stopping gracefully leaves the lease free"


def test_kill_9_of_the_leader_mid_stream_loses_and_repeats_nothing(pair: Pair) -> None:
    start_leader_and_standby(pair)
    with Producer(pair.plane, pair.namespace) as producer:
        wait_until(lambda: len(event_uids(pair.shared)) >= 20, 30, "20 events delivered")
        assert pair.a.process is not None
        pair.a.process.kill()
        pair.a.process.wait(10)
        killed = time.monotonic()
        before = len(event_uids(pair.shared))
        taken = wait_until(lambda: pair.holder() == "replica-b", 40, "replica-b to take over")
        first = wait_until(lambda: len(event_uids(pair.shared)) > before, 30, "a new delivery")
        time.sleep(3)  # keep producing under the new leader
    own = check_delivered(pair, producer)
    repeats = sum(n - 1 for n in own.values())
    print(
        f"\nHA kill -9: lease taken {taken - killed:.1f}s after the kill, first alert from the "
        f"new leader {first - killed:.1f}s after; {len(producer.uids)} events, shared file "
        f"exactly once; re-sent by the new leader before receiver dedup: {repeats}"
    )
    assert first - killed < 20
    stop_b_gracefully(pair)


def test_sigterm_of_the_leader_hands_over_at_once(pair: Pair) -> None:
    start_leader_and_standby(pair)
    with Producer(pair.plane, pair.namespace) as producer:
        wait_until(lambda: len(event_uids(pair.shared)) >= 20, 30, "20 events delivered")
        assert pair.a.process is not None
        pair.a.process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert pair.a.process.wait(30) == 0
        taken = wait_until(lambda: pair.holder() == "replica-b", 20, "replica-b to take over")
        time.sleep(3)
    own = check_delivered(pair, producer)
    print(
        f"\nHA SIGTERM: lease taken {taken - stopped:.1f}s after SIGTERM; "
        f"{len(producer.uids)} events, each exactly once"
    )
    # A graceful stop checkpoints only what it delivered: nothing is sent twice, not even
    # to receivers without idempotency keys.
    assert {uid: n for uid, n in own.items() if n > 1} == {}
    assert taken - stopped < 5
    stop_b_gracefully(pair)


def test_a_leader_whose_lease_is_taken_stops_sending_and_exits_4(pair: Pair) -> None:
    """Someone else holds the Lease now (an operator, a split brain healed): the old leader
    must stop watching and sending within its renew deadline and exit 4, to be restarted as
    a fresh candidate."""
    pair.a.start(pair.plane.kubeconfig)
    wait_until(lambda: pair.holder() == "replica-a", 30, "replica-a to take the lease")
    wait_until(lambda: pair.a.logged("listed"), 30, "replica-a to list")
    path = f"/apis/coordination.k8s.io/v1/namespaces/{pair.namespace}/leases/{LEASE}"
    lease = pair.plane.get(path)
    lease["spec"]["holderIdentity"] = "intruder"
    lease["spec"]["leaseDurationSeconds"] = 3600
    assert pair.plane.request("PUT", path, lease).status == 200
    stolen = time.monotonic()
    assert pair.a.process is not None
    assert pair.a.process.wait(30) == 4
    exited = time.monotonic()
    assert pair.a.logged("HA: lost the lease; stopping at once, exiting to run again")
    assert pair.holder() == "intruder"  # it did not fight back
    assert exited - stolen < 12  # renew_deadline (10 s) plus a retry period at most
