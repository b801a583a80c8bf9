"""A tiny fake events list server for the memory bench: N live Events, generated page by page.

It serves `GET .../events?limit=&continue=` with pages built on the fly from an index (the
continue token is the next index), so it holds no objects however large N is, and a watch
(`watch=true`) that stays open, sending a bookmark now and then. It records when the first
request and the first watch arrived, which is how the bench times start-up. Plain HTTP on
loopback; the kubeconfig it writes carries a dummy token.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import web

LIST_RV = "1000000"


def event(index: int, namespace: str, stamp: str) -> dict[str, object]:
    pod = f"app-{index % 5000}-7d4b9c5f8-{index % 99991:05d}"
    return {
        "metadata": {
            "name": f"{pod}.{index:x}",
            "namespace": namespace,
            "uid": str(uuid.UUID(int=(index * 0x9E3779B97F4A7C15 << 32) % (1 << 128))),
            "resourceVersion": str(index + 1),
            "creationTimestamp": stamp[:19] + "Z",
        },
        "eventTime": stamp,
        "reportingController": "kubelet",
        "reportingInstance": "kubelet-node-1",
        "action": "Sync",
        "reason": "BackOff",
        "regarding": {
            "kind": "Pod",
            "namespace": namespace,
            "name": pod,
            "uid": f"00000000-0000-4000-8000-{index % 5000:012d}",
            "apiVersion": "v1",
        },
        "note": f"Back-off restarting failed container app in pod {pod}",
        "type": "Warning",
    }


@dataclass
class ListServer:
    total: int
    namespace: str = "bench"
    first_request: float | None = None
    first_watch: float | None = None
    pages: int = 0
    served: int = 0
    _runner: web.AppRunner | None = None
    port: int = 0
    _watches: list[web.StreamResponse] = field(default_factory=list)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        if self.first_request is None:
            self.first_request = now
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request, now)
        limit = int(request.query.get("limit") or self.total or 1)
        start = int(request.query.get("continue") or 0)
        end = min(self.total, start + limit)
        # An hour-old stamp: live (inside the event TTL), and before a first start's cut-off.
        stamp = datetime.fromtimestamp(now - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        items = [event(i, self.namespace, stamp) for i in range(start, end)]
        self.pages += 1
        self.served += len(items)
        body = {
            "kind": "EventList",
            "apiVersion": "events.k8s.io/v1",
            "metadata": {
                "resourceVersion": LIST_RV,
                **({"continue": str(end)} if end < self.total else {}),
            },
            "items": items,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _watch(self, request: web.Request, now: float) -> web.StreamResponse:
        if self.first_watch is None:
            self.first_watch = now
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        self._watches.append(response)
        bookmark = {
            "type": "BOOKMARK",
            "object": {"kind": "Event", "metadata": {"resourceVersion": LIST_RV}},
        }
        try:
            while True:
                await response.write(orjson.dumps(bookmark) + b"\n")
                await asyncio.sleep(5)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/apis/events.k8s.io/v1/events", self._events)
        app.router.add_get("/apis/events.k8s.io/v1/namespaces/{ns}/events", self._events)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "bench", "user": {"token": "bench-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "bench"}}],
            "current-context": "fake",
        }
        path.write_bytes(orjson.dumps(config))
        return path
