"""Record what real controllers say: each local-cluster scenario's raw watch lines.

Starts a LocalCluster (binaries from ``tests/e2e/controlplane/build.sh``), opens the watches
the daemon opens (``GET /apis/events.k8s.io/v1/events?watch=1&allowWatchBookmarks=true``
from a list's resourceVersion) plus watches of Pods and Nodes, applies every scenario of
``controlplane/workloads.py`` at once, drives it (deletes the stuck Pod, waits for the crash
loops to repeat) until what it shows is there, and writes per scenario:

- ``<scenario>.jsonl`` — the Event watch lines of that scenario, byte for byte as the API
  server sent them (a replayable watch: ``kube-event-watcher replay`` reads it);
- ``<scenario>.pods.jsonl`` — the Pod watch lines of its namespace;
- ``<scenario>.nodes.jsonl`` — the Node watch lines (the Node scenario only).

Bookmarks are kept in every file. Run from the repository root:

    .venv/bin/python -m tests.e2e.record_local_cluster [--out DIR] [--scenario NAME ...]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .controlplane.cluster import ControlPlane, find_binaries
from .controlplane.localcluster import LocalCluster, node_condition, pod_container_status
from .controlplane.workloads import FAULTY_NODE, Scenario, apply, scenarios

JSON = dict[str, Any]
OUT = Path(__file__).resolve().parents[1] / "fixtures" / "real_controllers"


class Recorder:
    """One watch (list for a resourceVersion, then watch from it) whose raw lines are kept."""

    def __init__(self, plane: ControlPlane, path: str) -> None:
        self.plane = plane
        self.path = path
        self.lines: list[bytes] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"the watch of {self.path} did not open")

    def _run(self) -> None:
        version = self.plane.get(self.path, {"limit": 500})["metadata"]["resourceVersion"]
        params = {"watch": True, "allowWatchBookmarks": True, "resourceVersion": version}
        try:
            with self.plane.stream(self.path, params, timeout=600) as stream:
                self._ready.set()
                for line in stream.lines():
                    if line.strip():
                        self.lines.append(line if line.endswith(b"\n") else line + b"\n")
        except (OSError, http.client.HTTPException):
            pass  # the cluster stops under the open watch once the recording is written

    def select(self, keep: Callable[[JSON], bool]) -> list[bytes]:
        """The lines whose object passes `keep` (bookmarks always pass)."""
        chosen = []
        for line in list(self.lines):
            event = json.loads(line)
            if event.get("type") == "BOOKMARK" or keep(event.get("object") or {}):
                chosen.append(line)
        return chosen


def wait(cluster: LocalCluster, what: str, probe: Callable[[], bool], timeout: float) -> None:
    cluster.wait_for(what, lambda: True if probe() else None, timeout)


def pods(cluster: LocalCluster, namespace: str) -> list[JSON]:
    items: list[JSON] = cluster.plane.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    return items


def restarts_at_least(cluster: LocalCluster, namespace: str, count: int) -> bool:
    for pod in pods(cluster, namespace):
        status = pod_container_status(pod)
        if status and status.get("restartCount", 0) >= count:
            return True
    return False


def waiting_reason_seen(cluster: LocalCluster, namespace: str, reason: str) -> bool:
    for pod in pods(cluster, namespace):
        status = pod_container_status(pod) or {}
        if (status.get("state") or {}).get("waiting", {}).get("reason") == reason:
            return True
    return False


def drive(cluster: LocalCluster, chosen: dict[str, Scenario], say: Callable[[str], None]) -> None:
    """Wait until each chosen scenario has shown what it is for; deadlines are generous."""
    plane = cluster.plane
    for name in ("crashloop", "oomkilled"):
        if name in chosen:
            wait(
                cluster,
                f"{name}: 3 restarts",
                lambda n=name: restarts_at_least(cluster, f"kew-{n}", 3),
                90,
            )
            say(f"{name}: restartCount >= 3")
    if "imagepull" in chosen:
        for reason in ("ErrImagePull", "ImagePullBackOff"):
            wait(
                cluster,
                f"imagepull: {reason}",
                lambda r=reason: waiting_reason_seen(cluster, "kew-imagepull", r),
                60,
            )
        say("imagepull: ErrImagePull and ImagePullBackOff seen")
    if "stuck-terminating" in chosen:
        path = "/api/v1/namespaces/kew-stuck/pods/stuck"
        wait(
            cluster,
            "stuck: Running",
            lambda: plane.get(path)["status"].get("phase") == "Running",
            60,
        )
        plane.delete(path)
        wait(
            cluster,
            "stuck: stopped, still there",
            lambda: plane.get(path)["status"].get("phase") == "Succeeded",
            60,
        )
        say("stuck-terminating: deleted, containers stopped, still Terminating (finalizer)")
    if "node-not-ready" in chosen:
        node_path = f"/api/v1/nodes/{FAULTY_NODE}"

        def tainted() -> bool:
            node = plane.get(node_path)
            taints = {t["key"] for t in node["spec"].get("taints") or []}
            return (
                node_condition(node, "Ready") == "False"
                and "node.kubernetes.io/not-ready" in taints
            )

        wait(cluster, "node: NotReady and tainted", tainted, 60)
        say("node-not-ready: Ready=False, tainted not-ready")
    if "node-unreachable" in chosen:
        pod_path = "/api/v1/namespaces/kew-node-unreachable/pods/on-doomed-node"
        wait(
            cluster,
            "unreachable: Pod Running",
            lambda: plane.get(pod_path)["status"].get("phase") == "Running",
            60,
        )
        cluster.stop_doomed_kubelet()
        say("node-unreachable: the doomed Node's kubelet (kwok) killed")

        def pod_marked() -> bool:
            events = plane.get("/apis/events.k8s.io/v1/namespaces/kew-node-unreachable/events")
            return any(e.get("reason") == "NodeNotReady" for e in events["items"])

        wait(cluster, "unreachable: Pod NodeNotReady", pod_marked, 60)
        say("node-unreachable: Node Unknown, Pod marked NodeNotReady")
    if "unschedulable" in chosen:

        def failed_scheduling() -> bool:
            events = plane.get("/apis/events.k8s.io/v1/namespaces/kew-unschedulable/events")[
                "items"
            ]
            return any(e.get("reason") == "FailedScheduling" for e in events)

        wait(cluster, "unschedulable: FailedScheduling", failed_scheduling, 60)
        say("unschedulable: FailedScheduling")


def release(cluster: LocalCluster, chosen: dict[str, Scenario]) -> None:
    """Let the stuck Pod go, so the recording also shows its end."""
    if "stuck-terminating" in chosen:
        path = "/api/v1/namespaces/kew-stuck/pods/stuck"
        cluster.plane.patch(path, {"metadata": {"finalizers": None}})
        wait(
            cluster,
            "stuck: gone",
            lambda: not any(p["metadata"]["name"] == "stuck" for p in pods(cluster, "kew-stuck")),
            60,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output dir (default {OUT})")
    parser.add_argument(
        "--scenario", action="append", choices=sorted(scenarios()), help="only these (repeatable)"
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=5.0,
        help="seconds to keep recording after the last scenario is done",
    )
    args = parser.parse_args(argv)
    chosen = {
        name: s for name, s in scenarios().items() if not args.scenario or name in args.scenario
    }
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:5.1f}s] {message}", file=sys.stderr, flush=True)

    say("building or finding the binaries (tests/e2e/controlplane/build.sh)")
    with LocalCluster(find_binaries()) as cluster:
        say("local cluster up")
        recorders = {
            kind: Recorder(cluster.plane, path)
            for kind, path in (
                ("events", "/apis/events.k8s.io/v1/events"),
                ("pods", "/api/v1/pods"),
                ("nodes", "/api/v1/nodes"),
            )
        }
        for recorder in recorders.values():
            recorder.start()
        for scenario in chosen.values():
            apply(cluster, scenario)
        say(f"applied {', '.join(chosen)}")
        drive(cluster, chosen, say)
        release(cluster, chosen)
        time.sleep(args.linger)  # a recording, not a test: let the last repeats arrive
        args.out.mkdir(parents=True, exist_ok=True)
        for name, scenario in chosen.items():
            node_name = scenario.node.name if scenario.node else None

            def in_scenario(obj: JSON, scenario: Scenario = scenario) -> bool:
                """Its namespace's objects, and Events about its Node (in ``default``)."""
                if obj.get("metadata", {}).get("namespace") == scenario.namespace:
                    return True
                regarding = obj.get("regarding") or {}
                return (
                    scenario.node is not None
                    and regarding.get("kind") == "Node"
                    and regarding.get("name") == scenario.node.name
                )

            files = {
                f"{name}.jsonl": recorders["events"].select(in_scenario),
                f"{name}.pods.jsonl": recorders["pods"].select(in_scenario),
            }
            if node_name:
                files[f"{name}.nodes.jsonl"] = recorders["nodes"].select(
                    lambda obj, node_name=node_name: (
                        obj.get("metadata", {}).get("name") == node_name
                    )
                )
            for file_name, lines in files.items():
                (args.out / file_name).write_bytes(b"".join(lines))
                say(f"wrote {args.out / file_name} ({len(lines)} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
