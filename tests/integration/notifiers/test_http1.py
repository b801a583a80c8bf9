"""The webhook's lean HTTP/1.1 client against loopback servers that script what a real
endpoint may do: keep the connection, drop it while idle, answer in chunks, redirect, hang,
or serve TLS with a private CA."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.webhook import WebhookConfig, WebhookNotifier
from tests.factories import numbered_alert
from tests.support.tls import TestCA

Answer = Callable[[bytes], Awaitable[bytes | None]]  # request head → raw answer (None: hang)


class ScriptedServer:
    """A raw HTTP/1.1 server: reads each request (head and Content-Length body) and writes
    what `answer` returns; counts connections; `close_idle` drops a connection after each
    answer, as a server with a short keep-alive timeout does."""

    def __init__(self, answer: Answer, close_idle: bool = False) -> None:
        self.answer = answer
        self.close_idle = close_idle
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                raw = await self.answer(head)
                if raw is None:
                    await asyncio.sleep(3600)  # never answers (cancelled at the end)
                    return
                writer.write(raw)
                await writer.drain()
                if self.close_idle:
                    await asyncio.sleep(0.05)  # idle a moment, then the server hangs up
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def start(self, tls: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self.server.wait_closed()


async def ok(head: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\naccepted"


Serve = Callable[..., Awaitable[tuple[ScriptedServer, int]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[ScriptedServer] = []

    async def start(
        answer: Answer = ok, *, close_idle: bool = False, tls: ssl.SSLContext | None = None
    ) -> tuple[ScriptedServer, int]:
        server = ScriptedServer(answer, close_idle)
        servers.append(server)
        return server, await server.start(tls)

    yield start
    for server in servers:
        await server.stop()


def webhook(url: str, **extra: object) -> WebhookNotifier:
    return WebhookNotifier(WebhookConfig(name="hook", type="webhook", url=url, **extra))


async def test_posts_reuse_one_connection_and_carry_the_webhook_headers(serve: Serve) -> None:
    server, port = await serve()
    hook = webhook(f"http://user:pw@127.0.0.1:{port}/in/hook?x=1", headers={"X-Team": "ops"})
    alerts = [numbered_alert(i) for i in range(3)]
    try:
        results = [await hook.send(alert) for alert in alerts]
    finally:
        await hook.close()
    assert all(isinstance(r, Delivered) for r in results)
    assert server.connections == 1, "keep-alive: one connection for every POST"
    head, body = server.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /in/hook?x=1 HTTP/1.1"
    fields = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    assert fields["host"] == f"127.0.0.1:{port}"
    assert fields["content-type"] == "application/json"
    assert fields["content-length"] == str(len(body))
    assert fields["webhook-id"] == alerts[0].notification_id
    assert fields["x-team"] == "ops"
    assert fields["authorization"] == "Basic dXNlcjpwdw=="
    assert alerts[0].notification_id.encode() in body


async def test_a_connection_the_server_dropped_while_idle_is_replaced(serve: Serve) -> None:
    server, port = await serve(close_idle=True)
    hook = webhook(f"http://127.0.0.1:{port}/hook")
    try:
        first = await hook.send(numbered_alert(1))
        await asyncio.sleep(0.2)  # the server hangs up on the idle connection meanwhile
        second = await hook.send(numbered_alert(2))
    finally:
        await hook.close()
    assert isinstance(first, Delivered) and isinstance(second, Delivered)
    assert server.connections == 2 and len(server.requests) == 2


async def test_chunked_answers_redirects_and_errors_are_judged_as_answers(serve: Serve) -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nqueu\r\n2\r\ned\r\n0\r\n\r\n",
        b"HTTP/1.1 308 Permanent Redirect\r\nLocation: http://elsewhere/\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy",
    ]

    async def scripted(head: bytes) -> bytes:
        return answers.pop(0)

    server, port = await serve(scripted)
    hook = webhook(f"http://127.0.0.1:{port}/hook")
    try:
        chunked = await hook.send(numbered_alert(1))
        assert hook.last_answer == "HTTP 202\nqueued"
        redirected = await hook.send(numbered_alert(2))
        busy = await hook.send(numbered_alert(3))
    finally:
        await hook.close()
    assert isinstance(chunked, Delivered)
    assert isinstance(redirected, PermanentFailure) and "redirects are not followed" in str(
        redirected.reason
    )
    assert isinstance(busy, RetryAfter) and busy.seconds == 7
    assert server.connections == 1 and len(server.requests) == 3


async def test_no_answer_in_time_and_no_server_are_retried_with_the_url_masked(
    serve: Serve,
) -> None:
    async def hang(head: bytes) -> None:
        return None

    _, port = await serve(hang)
    hook = webhook(f"http://127.0.0.1:{port}/hook/s3cr3t-token", timeout="200ms")
    try:
        late = await hook.send(numbered_alert(1))
    finally:
        await hook.close()
    assert isinstance(late, RetryAfter) and "no answer within 0.2s" in late.reason
    gone = webhook(f"http://127.0.0.1:{unused_port()}/hook/s3cr3t-token")
    refused = await gone.send(numbered_alert(2))
    await gone.close()
    assert isinstance(refused, RetryAfter) and "cannot reach" in refused.reason
    assert "s3cr3t-token" not in refused.reason


async def test_tls_with_a_private_ca_is_verified(
    serve: Serve, test_ca: TestCA, tmp_path: Path
) -> None:
    cert, key = test_ca.issue("127.0.0.1", hosts=("127.0.0.1",)).write(tmp_path, "server")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(test_ca.cert_pem)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server, port = await serve(tls=tls)
    trusting = webhook(f"https://127.0.0.1:{port}/hook", tls={"ca_file": str(ca_file)})
    stranger = webhook(f"https://127.0.0.1:{port}/hook")  # the system CAs do not know it
    try:
        accepted = await trusting.send(numbered_alert(1))
        refused = await stranger.send(numbered_alert(2))
    finally:
        await trusting.close()
        await stranger.close()
    assert isinstance(accepted, Delivered)
    assert isinstance(refused, RetryAfter) and "certificate verify failed" in refused.reason
    assert len(server.requests) == 1


def unused_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
