"""One thread for one file's blocking operations (write + fsync, read back, rewrite).

`asyncio.to_thread` pays for a thread pool on every call (a work item, a concurrent future
chained to an asyncio one, a copied context, the pool's locks): ~30-90 µs of CPU here,
and each alert crosses to a thread at least twice (its spool append, the checkpoint that
covers it). A thread of its own per file, fed through a SimpleQueue, costs a third of that,
and keeps that file's operations in the order they were asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[
    Callable[..., Any],
    tuple[Any, ...],
    asyncio.Future[Any] | None,
    asyncio.AbstractEventLoop | None,
]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the operation ran all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class IoThread:
    """Runs blocking calls one after another in a thread of its own, started on first use.

    A call whose awaiting task is cancelled still runs to its end in the thread, as with
    `asyncio.to_thread`; callers keep the file consistent with a lock around each call."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._start()
        self._jobs.put((function, args, future, loop))
        return await future

    def post(self, function: Callable[[], object]) -> None:
        """Run `function` in the thread after the calls already asked for, with nobody
        waiting for it: no trip back to the event loop. What it does (and what goes wrong)
        it records itself; an exception it raises is dropped here."""
        self._start()
        self._jobs.put((function, (), None, None))

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            function, args, future, loop = job
            try:
                result, error = function(*args), None
            except BaseException as exc:  # handed to the caller, whatever it is
                result, error = None, exc
            if future is not None and loop is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    loop.call_soon_threadsafe(_settle, future, result, error)
            del job, function, args, future, loop, result, error

    def close(self) -> None:
        """Let the thread end once the calls already asked for are done."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None
