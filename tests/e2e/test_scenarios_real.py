"""The shared scenarios on the real kube-apiserver + etcd: the double's behaviour, checked."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane.cluster import ControlPlane
from tests.support import scenarios


class RealCluster:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.kubeconfig = plane.kubeconfig

    async def new_namespace(self) -> str:
        name = scenarios.unique_namespace()
        await asyncio.to_thread(self.plane.create_namespace, name)
        return name

    async def create_event(self, namespace: str, reason: str, regarding: str) -> dict[str, Any]:
        ref = {
            "kind": "Pod",
            "namespace": namespace,
            "name": regarding,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{regarding}")),
            "apiVersion": "v1",
        }
        name = f"{regarding}.{uuid.uuid4().hex[:12]}"
        event: dict[str, Any] = await asyncio.to_thread(
            self.plane.create_event, namespace, name, ref, reason, f"{reason} on {regarding}"
        )
        return event

    async def repeat_event(self, event: dict[str, Any], count: int) -> None:
        meta = event["metadata"]
        await asyncio.to_thread(
            self.plane.update_event_series, meta["namespace"], meta["name"], count
        )

    async def delete_event(self, event: dict[str, Any]) -> None:
        meta = event["metadata"]
        await asyncio.to_thread(
            self.plane.delete,
            f"/apis/events.k8s.io/v1/namespaces/{meta['namespace']}/events/{meta['name']}",
        )

    async def compact(self) -> None:
        await asyncio.to_thread(self.plane.compact_etcd)

    async def interrupt_watches(self) -> None:
        await asyncio.to_thread(self.plane.restart_apiserver, kill=True)


@pytest.fixture
def cluster(control_plane: ControlPlane) -> RealCluster:
    return RealCluster(control_plane)


async def test_in_order_once(cluster: RealCluster, tmp_path: Path) -> None:
    await scenarios.in_order_once(cluster, tmp_path)


async def test_series_growth(cluster: RealCluster, tmp_path: Path) -> None:
    await scenarios.series_growth(cluster, tmp_path)


async def test_apiserver_kill_9_mid_stream(cluster: RealCluster, tmp_path: Path) -> None:
    await scenarios.watch_interrupted(cluster, tmp_path)


@pytest.mark.parametrize("compact", [False, True], ids=["resume", "after-real-410"])
async def test_restart_catch_up(cluster: RealCluster, tmp_path: Path, compact: bool) -> None:
    await scenarios.restart_catch_up(cluster, tmp_path, compact=compact)
