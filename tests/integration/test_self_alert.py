"""The self-alert loop delivers through a real receiver (the file notifier) and retries a
failed send on its next check."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import orjson

from watcher.clock import FakeClock
from watcher.notifiers.file import FileConfig, FileNotifier
from watcher.ops.health import StaleWatchMonitor, WatchStatus, run_self_alert_loop
from watcher.pipeline.model import Alert

WATCH = WatchStatus("watch.prod._all.a1", "prod", None, "prod: all namespaces", True, 0.0)


async def test_stale_then_fresh_watch_writes_firing_then_resolved(tmp_path: Path) -> None:
    clock = FakeClock()
    notifier = FileNotifier(FileConfig(name="oncall", type="file", path=str(tmp_path / "a.jsonl")))
    await notifier.start()
    statuses = [WATCH]
    stop = asyncio.Event()
    script = iter(
        [
            lambda: clock.advance(601),  # stale now
            lambda: clock.advance(30),  # still stale: no repeat
            lambda: statuses.__setitem__(0, replace(WATCH, last_activity=clock.monotonic())),
            stop.set,
        ]
    )

    async def sleep(_: float) -> None:  # each "interval" runs the next step of the script
        next(script)()

    async def send(alert: Alert) -> None:
        result = await notifier.send(alert)
        assert type(result).__name__ == "Delivered"

    await run_self_alert_loop(
        StaleWatchMonitor(600, "oncall"), lambda: statuses, send, clock, stop, 30.0, sleep
    )
    await notifier.close()
    lines = [orjson.loads(line) for line in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert [(line["status"], line["reason"]) for line in lines] == [
        ("firing", "WatchStale"),
        ("resolved", "WatchStale"),
    ]


async def test_failed_send_is_retried_at_the_next_check() -> None:
    clock = FakeClock()
    stop = asyncio.Event()
    sent: list[str] = []
    attempts = 0

    async def flaky(alert: Alert) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("receiver down")
        sent.append(alert.status)

    steps = iter([lambda: clock.advance(700), lambda: None, stop.set])

    async def sleep(_: float) -> None:
        next(steps)()

    await run_self_alert_loop(
        StaleWatchMonitor(600, "oncall"), lambda: [WATCH], flaky, clock, stop, 30.0, sleep
    )
    assert sent == ["firing"]
    assert attempts == 2
