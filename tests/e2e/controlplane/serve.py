"""Run a LocalCluster in the foreground until told to stop (what ``kube-event-watcher demo``
starts, and a way to poke at the local cluster by hand).

    python -m tests.e2e.controlplane.serve [--bin DIR] [--workdir DIR] [--scenarios]

Progress and the final state go to stdout as JSON lines: ``{"step": "..."}`` while starting,
then ``{"ready": true, "kubeconfig": PATH, "scenarios": [...]}``. It stops everything it
started on SIGTERM or SIGINT, and also when its stdin reaches end of file (so a parent that
dies, even by SIGKILL, leaves nothing running) unless ``--no-stdin-watch``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .cluster import find_binaries
from .localcluster import LocalCluster
from .workloads import DOOMED_NODE, apply, scenarios


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def running(cluster: LocalCluster, path: str) -> bool | None:
    return cluster.plane.get(path)["status"].get("phase") == "Running" or None


def drive(cluster: LocalCluster) -> None:
    """What a person would do next: delete the Pod that will then stay Terminating, and let
    the doomed Node's kubelet die once its Pod runs."""
    stuck = "/api/v1/namespaces/kew-stuck/pods/stuck"
    cluster.wait_for("the stuck Pod Running", lambda: running(cluster, stuck), 60)
    say(step="deleting kew-stuck/stuck (its finalizer keeps it Terminating)")
    cluster.plane.delete(stuck)
    doomed = "/api/v1/namespaces/kew-node-unreachable/pods/on-doomed-node"
    cluster.wait_for("the Pod on the doomed Node Running", lambda: running(cluster, doomed), 60)
    say(step=f"killing the kubelet of {DOOMED_NODE} (it becomes unreachable)")
    cluster.stop_doomed_kubelet()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bin", type=Path, help="binaries dir (default: build.sh's)")
    parser.add_argument("--workdir", type=Path, help="work dir (default: a temp dir, removed)")
    parser.add_argument(
        "--scenarios", action="store_true", help="apply every broken workload of workloads.py"
    )
    parser.add_argument("--no-stdin-watch", action="store_true", help="ignore stdin's EOF")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not args.no_stdin_watch:

        def watch_stdin() -> None:
            sys.stdin.buffer.read()  # returns at EOF: the parent closed it, or died
            stop.set()

        threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()

    bin_dir = args.bin or find_binaries()
    cluster = LocalCluster(bin_dir, workdir=args.workdir)
    try:
        cluster.start(progress=lambda step: say(step=step))
        applied = []
        if args.scenarios:
            for scenario in scenarios().values():
                say(step=f"applying {scenario.name}: {scenario.summary}")
                apply(cluster, scenario)
                applied.append(scenario.name)
            drive(cluster)
        say(ready=True, kubeconfig=str(cluster.kubeconfig), scenarios=applied)
        while not stop.wait(1):
            pass
        say(step="stopping the local cluster")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
