"""Helpers for the notify-stage tests: a fake time source, a scripted notifier (alerts come
from tests.factories)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.test_utils import TestServer

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.delivery import DeliveryConfig, RateLimitConfig
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.pipeline.model import Alert


class FakeTime:
    """A FakeClock plus a sleep that moves it: waits take no real time."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(max(0.0, seconds))
        await asyncio.sleep(0)


Script = Callable[[Alert], DeliveryResult]


class ScriptedNotifier(Notifier):
    """Answers from `script` (default: Delivered) and records what it was sent and when."""

    can_digest: ClassVar[bool] = True

    def __init__(
        self,
        name: str = "fake",
        *,
        script: Script | None = None,
        clock: FakeClock | None = None,
        rate_limit: RateLimitConfig | None = None,
        delivery: DeliveryConfig | None = None,
    ) -> None:
        super().__init__(
            ReceiverConfig(
                name=name,
                type="fake",
                rate_limit=rate_limit,
                delivery=delivery or DeliveryConfig(),
            )
        )
        self.script = script
        self.clock = clock
        self.sent: list[Alert] = []
        self.sent_at: list[float] = []
        self.gate: asyncio.Event | None = None  # when set up, send waits for it

    async def send(self, alert: Alert) -> DeliveryResult:
        if self.gate is not None:
            await self.gate.wait()
        result = self.script(alert) if self.script else Delivered()
        self.sent.append(alert)
        self.sent_at.append(self.clock.monotonic() if self.clock else 0.0)
        return result

    def delivered_ids(self) -> list[str]:
        return [a.notification_id for a in self.sent]


class NoDigestNotifier(ScriptedNotifier):
    can_digest: ClassVar[bool] = False


class BatchingNotifier(ScriptedNotifier):
    """Takes up to `size` alerts a request, as a webhook with `batch_size` does; refuses
    (for good) every request that holds an alert `refuses` picks; records each request."""

    can_digest: ClassVar[bool] = False

    def __init__(
        self, size: int, *, refuses: Callable[[Alert], bool] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.size = size
        self.refuses = refuses or (lambda alert: False)
        self.requests: list[list[str]] = []

    @property
    def batch_size(self) -> int:
        return self.size

    async def send(self, alert: Alert) -> DeliveryResult:
        return await self.send_many([alert])

    async def send_many(self, alerts: Sequence[Alert]) -> DeliveryResult:
        assert 1 <= len(alerts) <= self.size
        self.requests.append(ids(alerts))
        if self.gate is not None:
            await self.gate.wait()
        if any(self.refuses(alert) for alert in alerts):
            return PermanentFailure("HTTP 400: one of these is refused")
        self.sent.extend(alerts)
        return Delivered()


def answers(*results: DeliveryResult) -> Script:
    """A script that gives `results` in turn, then Delivered for ever."""
    queue = list(results)
    return lambda alert: queue.pop(0) if queue else Delivered()


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until `condition` holds (the stage's file writes run in threads)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.002)


async def serve_app(app: web.Application) -> TestServer:
    """`app` on a loopback port (a platform's double); close it when done."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def ids(alerts: Iterable[Alert]) -> list[str]:
    return [a.notification_id for a in alerts]


__all__ = [
    "BatchingNotifier",
    "Delivered",
    "FakeTime",
    "NoDigestNotifier",
    "PermanentFailure",
    "RetryAfter",
    "ScriptedNotifier",
    "answers",
    "ids",
    "serve_app",
    "until",
]
