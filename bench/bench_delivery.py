"""Notify-stage measurements (not a test): run `python bench/bench_delivery.py`.

1. throughput under a rate limit, fake clock: the stage reaches the configured rate and not more;
2. throughput against a local webhook server (no limit; spool fsync on), alerts per second;
3. memory of a lane holding 10k queued alerts (bounded memory queue, rest in the spool);
4. spool replay time for 10k alerts.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kube_event_watcher.config.delivery import DeliveryConfig, RateLimitConfig
from kube_event_watcher.notifiers.delivery import DeliveryStage
from kube_event_watcher.notifiers.spool import Spool
from kube_event_watcher.notifiers.webhook import WebhookConfig, WebhookNotifier
from tests.factories import numbered_alert
from tests.notifiers_support import FakeTime, ScriptedNotifier, until


async def rate_limited(per_minute: float, burst: int, alerts: int) -> None:
    fake = FakeTime()
    notifier = ScriptedNotifier(
        clock=fake.clock,
        rate_limit=RateLimitConfig(per_minute=per_minute, burst=burst),
        delivery=DeliveryConfig(digest_after=None),
    )
    with tempfile.TemporaryDirectory() as tmp:
        stage = DeliveryStage([notifier], tmp, clock=fake.clock, sleep=fake.sleep)
        await stage.start()
        started = time.perf_counter()
        for i in range(alerts):
            await stage.submit("fake", numbered_alert(i))
        await until(lambda: stage.lanes["fake"].sent == alerts, "sent", timeout=300)
        real = time.perf_counter() - started
        await stage.stop(1.0)
    span = notifier.sent_at[-1] - notifier.sent_at[0]
    achieved = (alerts - burst) / span * 60 if span else float("inf")
    print(
        f"rate limit {per_minute:g}/min burst {burst}: {alerts} alerts over {span:.0f}s fake time "
        f"= {achieved:.2f}/min after the burst (limit {per_minute:g}); real time {real:.2f}s"
    )


async def local_webhook(alerts: int, fsync: bool) -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", ok)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    notifier = WebhookNotifier(
        WebhookConfig(
            name="hook",
            type="webhook",
            url=str(server.make_url("/hook")),
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        stage = DeliveryStage([notifier], tmp, fsync=fsync)
        await stage.start()
        started = time.perf_counter()
        for i in range(alerts):
            await stage.submit("hook", numbered_alert(i))
        spooled = time.perf_counter() - started
        await until(lambda: stage.lanes["hook"].sent == alerts, "sent", timeout=300)
        total = time.perf_counter() - started
        await stage.stop(1.0)
    await server.close()
    print(
        f"local webhook, fsync={fsync}: {alerts} alerts submitted in {spooled:.2f}s "
        f"({alerts / spooled:.0f}/s durable submits), all delivered in {total:.2f}s "
        f"({alerts / total:.0f}/s end to end)"
    )


async def queue_memory(alerts: int, queue_size: int) -> None:
    notifier = ScriptedNotifier(delivery=DeliveryConfig(queue_size=queue_size))
    notifier.gate = asyncio.Event()  # nothing leaves: everything stays queued
    with tempfile.TemporaryDirectory() as tmp:
        stage = DeliveryStage([notifier], tmp, fsync=False)
        await stage.start()
        batch = [numbered_alert(i) for i in range(alerts)]
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for alert in batch:
            await stage.submit("fake", alert)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        lane = stage.lanes["fake"]
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        print(
            f"queue memory: {alerts} alerts queued, queue_size {queue_size}: "
            f"{lane.in_memory} in memory, {lane.queue_depth} pending, spool "
            f"{lane.spool_bytes / 1e6:.1f} MB on disk, +{grown / 1e6:.2f} MB Python heap "
            f"({grown / alerts:.0f} B per queued alert)"
        )
        notifier.gate.set()
        await stage.stop(0.1)


def spool_replay(alerts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.spool.jsonl"
        spool = Spool(path, fsync=False)
        spool.open()
        for i in range(alerts):
            spool.append(numbered_alert(i), float(i))
        spool.close()
        started = time.perf_counter()
        again = Spool(path)
        again.open()
        opened = time.perf_counter() - started
        replayed = sum(1 for _ in again.entries())
        total = time.perf_counter() - started
        again.close()
        print(
            f"spool replay: {replayed} alerts ({path.stat().st_size / 1e6:.1f} MB): "
            f"index rebuilt in {opened * 1000:.0f} ms, all decoded in {total * 1000:.0f} ms"
        )


async def main() -> None:
    await rate_limited(20, 1, 200)  # DingTalk / WeCom
    await rate_limited(120, 10, 500)  # PagerDuty
    await local_webhook(2000, fsync=True)
    await local_webhook(2000, fsync=False)
    await queue_memory(10_000, 1000)
    spool_replay(10_000)


if __name__ == "__main__":
    asyncio.run(main())
