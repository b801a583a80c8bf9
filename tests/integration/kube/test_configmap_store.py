"""The ConfigMap state store against a small fake of the ConfigMap endpoints (409s included),
and a restart inside an aggregation window for both the ConfigMap and the file backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kube_event_watcher.kube.client import ApiEndpoint
from kube_event_watcher.kube.configmap_store import ConfigMapStore, StateTooLarge
from kube_event_watcher.kube.errors import ApiError
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.pipeline.aggregate import Aggregator
from kube_event_watcher.state.base import StateStore
from kube_event_watcher.state.file import FileStore
from tests.factories import T0, aggregation, occurrence


class FakeConfigMaps:
    """GET/POST/PUT of ConfigMaps with resourceVersion checks, as the API server does them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.rv = 100
        self.conflicts_to_inject = 0
        self.requests: list[tuple[str, int]] = []

    def app(self) -> web.Application:
        app = web.Application()
        base = "/api/v1/namespaces/{ns}/configmaps"
        app.router.add_get(base + "/{name}", self.get)
        app.router.add_put(base + "/{name}", self.put)
        app.router.add_post(base, self.post)
        return app

    @staticmethod
    def status(code: int, reason: str, message: str) -> web.Response:
        body = {"kind": "Status", "code": code, "reason": reason, "message": message}
        return web.json_response(body, status=code)

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        return obj

    async def get(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        self.requests.append(("GET", 0))
        if key not in self.objects:
            return self.status(404, "NotFound", f'configmaps "{key[1]}" not found')
        return web.json_response(self.objects[key])

    async def post(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = (request.match_info["ns"], body["metadata"]["name"])
        self.requests.append(("POST", len(await request.read())))
        if key in self.objects:
            return self.status(409, "AlreadyExists", f'configmaps "{key[1]}" already exists')
        self.objects[key] = self._bump(body)
        return web.json_response(self.objects[key], status=201)

    async def put(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = (request.match_info["ns"], request.match_info["name"])
        self.requests.append(("PUT", len(await request.read())))
        current = self.objects.get(key)
        if current is None:
            return self.status(404, "NotFound", f'configmaps "{key[1]}" not found')
        if self.conflicts_to_inject:
            # Another writer got in first: it changed the map and its resourceVersion.
            self.conflicts_to_inject -= 1
            current["binaryData"]["other.z"] = "b3RoZXI="
            self._bump(current)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return self.status(
                409, "Conflict", "the object has been modified; please apply your changes"
            )
        self.objects[key] = self._bump(body)
        return web.json_response(self.objects[key])


async def no_auth() -> str | None:
    return None


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeConfigMaps, KubeHttp]]:
    configmaps = FakeConfigMaps()
    async with TestServer(configmaps.app(), host="127.0.0.1") as server:
        endpoint = ApiEndpoint(
            cluster="test",
            server=str(server.make_url("")).rstrip("/"),
            ssl_context=None,
            auth_header=no_auth,
        )
        http = KubeHttp(endpoint)
        try:
            yield configmaps, http
        finally:
            await http.close()


async def test_documents_round_trip_and_the_configmap_is_created_once(
    fake: tuple[FakeConfigMaps, KubeHttp],
) -> None:
    configmaps, http = fake
    store = ConfigMapStore(http, "ops", "kew-state")
    assert await store.load("aggregation") is None
    await store.save({"aggregation": b'{"a": 1}', "watch.default._all": b"x" * 10_000})
    await store.save({"aggregation": b'{"a": 2}'})
    assert [m for m, _ in configmaps.requests] == ["GET", "POST", "PUT"]
    obj = configmaps.objects["ops", "kew-state"]
    assert set(obj["binaryData"]) == {"aggregation.z", "watch.default._all.z"}
    assert len(obj["binaryData"]["watch.default._all.z"]) < 200  # compressed

    reopened = ConfigMapStore(http, "ops", "kew-state")
    assert await reopened.load("aggregation") == b'{"a": 2}'
    assert await reopened.load("watch.default._all") == b"x" * 10_000


async def test_a_conflict_is_resolved_by_reading_again_and_keeping_other_keys(
    fake: tuple[FakeConfigMaps, KubeHttp],
) -> None:
    configmaps, http = fake
    store = ConfigMapStore(http, "ops", "kew-state")
    await store.save({"aggregation": b"one"})
    configmaps.conflicts_to_inject = 2
    await store.save({"aggregation": b"two"})
    obj = configmaps.objects["ops", "kew-state"]
    assert "other.z" in obj["binaryData"]  # the other writer's key survives
    assert await ConfigMapStore(http, "ops", "kew-state").load("aggregation") == b"two"

    configmaps.conflicts_to_inject = 10
    with pytest.raises(ApiError, match="409"):
        await ConfigMapStore(http, "ops", "kew-state", max_attempts=3).save({"aggregation": b"3"})


async def test_too_much_state_is_refused_with_what_to_do(
    fake: tuple[FakeConfigMaps, KubeHttp],
) -> None:
    configmaps, http = fake
    store = ConfigMapStore(http, "ops", "kew-state", max_bytes=4096)
    incompressible = os.urandom(8192)
    with pytest.raises(StateTooLarge, match=r"aggregation.max_keys.*state.backend: file"):
        await store.save({"aggregation": incompressible})
    assert configmaps.objects == {}


async def restart_inside_window(store_before: StateStore, store_after: StateStore) -> None:
    """The daemon's cycle: aggregate, notify, commit; crash; restore; no second notification."""
    config = aggregation()
    agg = Aggregator(config)
    for i in range(5):
        agg.add(occurrence(f"web-7d4b9c5f8-{i:05d}", uid=f"u{i}", at=T0 + i), T0 + i)
    [firing] = agg.tick(T0 + 30)
    await store_before.save({"aggregation": agg.snapshot()})

    # The process dies here and a new one starts a minute later, still inside every window.
    restarted = Aggregator(config)
    data = await store_after.load("aggregation")
    assert data is not None
    restarted.restore(data)
    for i in range(5):
        at = T0 + 60 + i
        more = occurrence(f"web-7d4b9c5f8-{i:05d}", uid=f"u{i}", total=2, at=at)
        assert restarted.add(more, at) == []
    assert restarted.tick(T0 + 60 + 599) == []
    [resolved] = restarted.tick(T0 + 64 + 600)
    assert (resolved.status, resolved.key, resolved.count) == ("resolved", firing.key, 10)
    assert resolved.sequence == 2


async def test_restart_inside_window_with_the_configmap_store(
    fake: tuple[FakeConfigMaps, KubeHttp],
) -> None:
    _, http = fake
    await restart_inside_window(
        ConfigMapStore(http, "ops", "kew-state"), ConfigMapStore(http, "ops", "kew-state")
    )


async def test_restart_inside_window_with_the_file_store(tmp_path: Path) -> None:
    await restart_inside_window(FileStore(str(tmp_path)), FileStore(str(tmp_path)))
