"""A small fake of the coordination.k8s.io/v1 Lease endpoints, with resourceVersion checks as
the API server does them, and a gate that holds writes so tests can line up a race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from kube_event_watcher.kube.client import ApiEndpoint
from kube_event_watcher.kube.http import KubeHttp

BASE = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "code": code, "reason": reason, "message": message}
    return web.json_response(body, status=code)


class FakeLeases:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.rv = 1000
        self.failing = False  # answer 500 to everything (an API server in trouble)
        self._gate: asyncio.Event | None = None  # writes wait for it while held
        self._waiting = 0
        self._arrived = asyncio.Condition()
        self.conflicts = 0
        self.writes: list[str] = []  # holderIdentity of each accepted write

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(BASE + "/{name}", self.get)
        app.router.add_put(BASE + "/{name}", self.put)
        app.router.add_post(BASE, self.post)
        return app

    def holder(self, ns: str, name: str) -> str | None:
        obj = self.objects.get((ns, name))
        return None if obj is None else obj["spec"].get("holderIdentity")

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.writes.append(obj["spec"].get("holderIdentity", ""))
        return obj

    def hold_writes(self) -> None:
        self._gate = asyncio.Event()
        self._waiting = 0

    def release_writes(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def writes_waiting(self, count: int) -> None:
        async with self._arrived:
            await self._arrived.wait_for(lambda: self._waiting >= count)

    async def _hold(self) -> None:
        gate = self._gate
        if gate is not None:
            async with self._arrived:
                self._waiting += 1
                self._arrived.notify_all()
            await gate.wait()

    async def get(self, request: web.Request) -> web.Response:
        if self.failing:
            return status(500, "InternalError", "etcd is unhappy")
        key = (request.match_info["ns"], request.match_info["name"])
        if key not in self.objects:
            return status(404, "NotFound", f'leases.coordination.k8s.io "{key[1]}" not found')
        return web.json_response(self.objects[key])

    async def post(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self._hold()
        if self.failing:
            return status(500, "InternalError", "etcd is unhappy")
        key = (request.match_info["ns"], body["metadata"]["name"])
        if key in self.objects:
            self.conflicts += 1
            return status(409, "AlreadyExists", f'leases "{key[1]}" already exists')
        self.objects[key] = self._bump(body)
        return web.json_response(self.objects[key], status=201)

    async def put(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self._hold()
        if self.failing:
            return status(500, "InternalError", "etcd is unhappy")
        key = (request.match_info["ns"], request.match_info["name"])
        current = self.objects.get(key)
        if current is None:
            return status(404, "NotFound", f'leases "{key[1]}" not found')
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            self.conflicts += 1
            return status(409, "Conflict", "the object has been modified; please apply again")
        self.objects[key] = self._bump(body)
        return web.json_response(self.objects[key])


async def _no_auth() -> str | None:
    return None


@asynccontextmanager
async def serving(leases: FakeLeases) -> AsyncIterator[str]:
    """Serve `leases` on 127.0.0.1; yields the server URL."""
    async with TestServer(leases.app(), host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


def kube_http(server: str) -> KubeHttp:
    return KubeHttp(
        ApiEndpoint(cluster="test", server=server, ssl_context=None, auth_header=_no_auth)
    )
