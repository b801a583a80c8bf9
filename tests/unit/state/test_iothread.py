"""The per-file I/O thread: results and errors reach the caller, calls run in order and off
the event loop, a cancelled caller does not stop its call, and close ends the thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kube_event_watcher.state.iothread import IoThread


async def test_calls_run_in_order_in_one_thread_off_the_loop() -> None:
    io = IoThread("test-io")
    seen: list[tuple[int, str]] = []

    def record(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * 2

    results = await asyncio.gather(*(io.run(record, i) for i in range(50)))
    io.close()
    assert results == [i * 2 for i in range(50)]
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"test-io"}


async def test_an_error_in_the_call_is_raised_to_the_caller() -> None:
    io = IoThread("test-io")

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await io.run(full_disk)
    assert await io.run(lambda: "still working") == "still working"
    io.close()


async def test_a_cancelled_caller_leaves_its_call_to_finish() -> None:
    io = IoThread("test-io")
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.append(True)

    task = asyncio.create_task(io.run(slow))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await io.run(lambda: finished) == [True], "the next call runs after it"
    io.close()


async def test_close_ends_the_thread() -> None:
    io = IoThread("test-io-close")
    await io.run(lambda: None)
    thread = next(t for t in threading.enumerate() if t.name == "test-io-close")
    io.close()
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()
