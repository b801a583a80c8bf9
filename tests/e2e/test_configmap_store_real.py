"""The ConfigMap state store on the real kube-apiserver: restart inside a window, and two
writers racing (optimistic concurrency on resourceVersion, a real 409)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.kube.client import resolve_endpoint
from kube_event_watcher.kube.configmap_store import ConfigMapStore
from kube_event_watcher.kube.http import KubeHttp
from tests.e2e.controlplane.cluster import ControlPlane
from tests.integration.kube.test_configmap_store import restart_inside_window


@pytest.fixture
async def admin_http(control_plane: ControlPlane) -> AsyncIterator[KubeHttp]:
    endpoint = await resolve_endpoint(
        ClusterConfig(name="e2e"), kubeconfig=str(control_plane.kubeconfig), env={}
    )
    http = KubeHttp(endpoint)
    try:
        yield http
    finally:
        await http.close()


@pytest.fixture
async def namespace(control_plane: ControlPlane) -> str:
    name = f"state-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(control_plane.create_namespace, name)
    return name


async def test_restart_inside_window_on_the_real_configmap(
    admin_http: KubeHttp, namespace: str, control_plane: ControlPlane
) -> None:
    await restart_inside_window(
        ConfigMapStore(admin_http, namespace, "kew-state"),
        ConfigMapStore(admin_http, namespace, "kew-state"),
    )
    stored = await asyncio.to_thread(
        control_plane.get, f"/api/v1/namespaces/{namespace}/configmaps/kew-state"
    )
    assert set(stored["binaryData"]) == {"aggregation.z"}  # zlib-compressed


async def test_two_writers_race_and_neither_loses_the_others_document(
    admin_http: KubeHttp, namespace: str
) -> None:
    first = ConfigMapStore(admin_http, namespace, "shared")
    second = ConfigMapStore(admin_http, namespace, "shared")
    await first.save({"a": b"1"})
    assert await second.load("a") == b"1"  # second now holds the old resourceVersion
    await first.save({"a": b"2"})
    await second.save({"b": b"3"})  # a real 409: re-read, keep "a", retry
    fresh = ConfigMapStore(admin_http, namespace, "shared")
    assert await fresh.load("a") == b"2"
    assert await fresh.load("b") == b"3"
