"""The daemon's task helpers: a stop never hangs on a loop or a task that will not die."""

from __future__ import annotations

import asyncio
import contextlib

from structlog.testing import capture_logs

from kube_event_watcher.daemon import cancel_and_wait, wait_event


async def test_a_loop_on_an_event_set_all_the_time_stops_when_cancelled() -> None:
    event = asyncio.Event()
    turns = 0

    async def setter() -> None:
        while True:
            event.set()
            await asyncio.sleep(0)

    async def loop() -> None:  # the shape of the commit and tick loops
        nonlocal turns
        while True:
            await wait_event(event, 1.0)
            event.clear()
            turns += 1

    setting = asyncio.create_task(setter())
    looping = asyncio.create_task(loop())
    for _ in range(1000):  # let the loop turn (each yield lets the setter set the event)
        if turns >= 200:
            break
        await asyncio.sleep(0)
    for _ in range(50):  # cancel at many instants: none may be swallowed
        looping.cancel()
        await asyncio.wait([looping], timeout=2)
        assert looping.cancelled(), "the cancellation reached the loop"
        looping = asyncio.create_task(loop())
        await asyncio.sleep(0)
    await cancel_and_wait([looping, setting])
    assert looping.cancelled() and setting.cancelled()


async def test_wait_event_returns_at_its_timeout_without_the_event() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await wait_event(asyncio.Event(), 0.05)
    # uvloop's clock and timers count whole milliseconds (libuv's uv_now).
    assert loop.time() - start >= 0.05 - 0.001


async def test_a_task_that_ignores_a_cancel_is_named_and_cancelled_again() -> None:
    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(100)
        await asyncio.sleep(100)

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await cancel_and_wait([task], patience=0.05)
    assert task.cancelled()
    assert [e["tasks"] for e in logs if e["event"].startswith("tasks did not stop")] == [
        ["stubborn"]
    ]
