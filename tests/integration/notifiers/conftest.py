"""Local platform doubles: an aiohttp server on 127.0.0.1 per test, and a notifier factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

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
