"""Shared fixtures: a TLS API-server double on loopback and a kubeconfig pointing at it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from kube_event_watcher.config.secrets import registry
from tests.support.apidouble import ApiDouble, tls_server_context
from tests.support.tls import TestCA


@dataclass
class RunningDouble:
    api: ApiDouble
    url: str
    kubeconfig: Path
    ca_file: Path
    port: int


@pytest.fixture(scope="session")
def test_ca() -> TestCA:
    return TestCA()


@pytest.fixture(autouse=True)
async def _no_leftover_tasks() -> AsyncIterator[None]:
    """A test fails if it leaves asyncio tasks running (STYLE.md)."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    left = [t for t in left if t is not asyncio.current_task()]
    assert not left, f"tasks left running: {[t.get_name() for t in left]}"


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Iterator[None]:
    registry.clear()
    yield
    registry.clear()


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, user: dict[str, object]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "double",
        "clusters": [
            {
                "name": "double",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "tester", "user": user}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "tester"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def serving_double(directory: Path, test_ca: TestCA) -> AsyncIterator[RunningDouble]:
    """An ApiDouble on a random loopback port with TLS, and a kubeconfig pointing at it."""
    directory.mkdir(parents=True, exist_ok=True)
    api = ApiDouble(token="double-token-0123456789")
    cert, key = test_ca.issue("localhost", hosts=("127.0.0.1", "localhost")).write(
        directory, "server"
    )
    runner = web.AppRunner(api.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_server_context(cert, key))
    await site.start()
    port = runner.addresses[0][1]
    url = f"https://127.0.0.1:{port}"
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(test_ca.cert_pem)
    kubeconfig = write_kubeconfig(
        directory / "kubeconfig", url, test_ca.cert_pem, {"token": api.token}
    )
    try:
        yield RunningDouble(api, url, kubeconfig, ca_file, port)
    finally:
        await api.close_watches()
        await asyncio.wait_for(runner.cleanup(), 5)


@pytest.fixture
async def api_double(tmp_path: Path, test_ca: TestCA) -> AsyncIterator[RunningDouble]:
    async with serving_double(tmp_path, test_ca) as double:
        yield double
