"""Contract servers on loopback: each test gives the handler that checks what the platform
checks and answers the way the platform answers (`contract_server`), or a whole platform
double app (`serve`); `started` opens a notifier's session for the test; `launch` does both
for a notifier configured against the double."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kube_event_watcher.clock import Clock
from kube_event_watcher.notifiers.http import HttpNotifier

Handler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


@dataclass
class ContractServer:
    """Requests seen (method, path, headers, body) and a handler that can be swapped."""

    handler: Handler | None = None
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    server: TestServer | None = None

    def url(self, path: str = "/") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        if self.handler is None:
            return web.Response(status=200, text="ok")
        return await self.handler(request, body)


@pytest.fixture
async def contract_server() -> AsyncIterator[ContractServer]:
    contract = ContractServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", contract._handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    contract.server = server
    yield contract
    await server.close()


Serve = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """`await serve(app)` starts `app` on a random loopback port; stopped after the test."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> TestServer:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def started() -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
    """`await started(notifier)` opens the notifier's session; closed after the test."""
    notifiers: list[Any] = []

    async def start(notifier: Any) -> Any:
        await notifier.start()
        notifiers.append(notifier)
        return notifier

    yield start
    for notifier in notifiers:
        await notifier.close()


Started = Callable[[Any], Awaitable[Any]]
Launch = Callable[..., Awaitable[Any]]
SERVER = "{server}"
"""Stands for the double's base URL (http://127.0.0.1:PORT) in `launch`'s settings."""


@pytest.fixture
def launch(serve: Serve, started: Started) -> Launch:
    """`await launch(NotifierClass, app, clock=None, **settings)`: serves the platform double
    `app` and returns a started notifier configured with `settings`, where SERVER in a value
    stands for the double's base URL, e.g. url=SERVER + "/robot/send?access_token=T"."""

    async def build(
        notifier_class: type[HttpNotifier],
        app: web.Application,
        *,
        clock: Clock | None = None,
        **settings: Any,
    ) -> Any:
        base = str((await serve(app)).make_url("")).rstrip("/")
        values = {
            k: v.replace(SERVER, base) if isinstance(v, str) else v for k, v in settings.items()
        }
        return await started(notifier_class(notifier_class.config_model(**values), clock=clock))

    return build
