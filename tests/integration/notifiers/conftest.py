"""A contract server on loopback: each test gives the handler that checks what the platform
checks and answers the way the platform answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

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
