"""Outages and 429 storms through the whole notify stage, against a loopback webhook."""

from __future__ import annotations

import itertools
from pathlib import Path

from aiohttp import web

from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.notifiers.delivery import DeliveryStage
from kube_event_watcher.notifiers.webhook import WebhookConfig, WebhookNotifier
from tests.factories import numbered_alert
from tests.integration.notifiers.conftest import ContractServer
from tests.notifiers_support import FakeTime, ids, until


def hook(contract: ContractServer, rate: RateLimitConfig | None = None) -> WebhookNotifier:
    return WebhookNotifier(
        WebhookConfig(name="hook", type="webhook", url=contract.url("/hook"), rate_limit=rate)
    )


def stage_for(notifier: WebhookNotifier, spool_dir: Path, time: FakeTime) -> DeliveryStage:
    return DeliveryStage([notifier], spool_dir, clock=time.clock, sleep=time.sleep)


async def test_down_then_restarted_then_up_delivers_each_once_in_order(
    contract_server: ContractServer, tmp_path: Path
) -> None:
    up = False
    delivered: list[str] = []

    async def handler(request: web.Request, body: bytes) -> web.Response:
        if not up:
            return web.Response(status=503, text="maintenance")
        delivered.append(request.headers["webhook-id"])
        return web.Response(status=200)

    contract_server.handler = handler
    time = FakeTime()
    alerts = [numbered_alert(i) for i in range(25)]
    first = stage_for(hook(contract_server), tmp_path, time)
    await first.start()
    for alert in alerts[:15]:
        await first.submit("hook", alert)
    await until(lambda: first.lanes["hook"].retried >= 5, "receiver down, retrying")
    await first.stop(drain_timeout=1.0)  # the daemon restarts while the receiver is down

    up = True
    second = stage_for(hook(contract_server), tmp_path, time)
    await second.start()
    for alert in alerts[15:]:
        await second.submit("hook", alert)
    await until(lambda: second.lanes["hook"].sent == 25, "all delivered")
    await second.stop(drain_timeout=1.0)
    assert delivered == ids(alerts)
    assert second.lanes["hook"].queue_depth == 0


async def test_429_storm_is_respected_and_the_rate_never_exceeded(
    contract_server: ContractServer, tmp_path: Path
) -> None:
    """The platform allows 20 a minute and answers 429 + Retry-After to anything faster."""
    time = FakeTime()
    limit_per_minute = 20
    accepted: list[float] = []
    attempts: list[float] = []
    storm = itertools.count()

    async def handler(request: web.Request, body: bytes) -> web.Response:
        now = time.clock.monotonic()
        attempts.append(now)
        recent = [t for t in accepted if now - t < 60.0]
        # The first five requests hit a platform that is already throttling us.
        if next(storm) < 5 or len(recent) >= limit_per_minute:
            return web.Response(status=429, headers={"Retry-After": "30"})
        accepted.append(now)
        return web.Response(status=200)

    contract_server.handler = handler
    rate = RateLimitConfig(per_minute=limit_per_minute, burst=5)
    stage = stage_for(hook(contract_server, rate), tmp_path, time)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(60)]
    for alert in alerts:
        await stage.submit("hook", alert)
    await until(lambda: stage.lanes["hook"].sent == 60, "all delivered", timeout=30)
    await stage.stop(1.0)
    # Every retry after a 429 waited at least the 30 s the platform asked for.
    for before, after in itertools.pairwise(attempts[:6]):
        assert after - before >= 30.0
    # Our own attempts never exceed the limit in any minute (burst + rate).
    for i, start in enumerate(attempts):
        in_window = sum(1 for t in attempts[i:] if t - start < 60.0)
        assert in_window <= 5 + limit_per_minute
    assert len(accepted) == 60
