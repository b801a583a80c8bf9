"""The event loop the commands run on: uvloop where it is installed, else asyncio's own.

The daemon's time is spent in the loop's machinery (the selector, transports, TLS reads of the
watch stream, timers, call_soon_threadsafe from the state and spool threads). uvloop's loop is
libuv under Cython: measured on the real apiserver at 200 alerts/s (bench/RESULTS.md, ratios
to the Go peer in the same run), the steady p99 went from 1.75x to 1.44–1.50x, the CPU per
alert from 2.08x to 1.98–2.06x.

KEW_EVENT_LOOP=asyncio chooses asyncio's loop (e.g. to rule the loop out when debugging);
the pure-Python CI step runs the suite that way, so both loops stay tested.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

ENV = "KEW_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")

T = TypeVar("T")


class EventLoopChoiceError(ValueError):
    """KEW_EVENT_LOOP names no loop we have."""


def loop_factory(environ: dict[str, str] | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop to run on; uvloop unless the environment says asyncio.

    An explicit KEW_EVENT_LOOP=uvloop without uvloop installed is an error; the default quietly
    falls back to asyncio, since uvloop has no build for some platforms (Windows, PyPy).
    """
    env = os.environ if environ is None else environ
    wanted = env.get(ENV, "").strip().lower()
    if wanted and wanted not in CHOICES:
        raise EventLoopChoiceError(f"{ENV}={wanted!r}: expected one of {', '.join(CHOICES)}")
    if wanted == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise EventLoopChoiceError(f"{ENV}=uvloop, but uvloop is not installed") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def running_loop_name() -> str:
    """'uvloop' or 'asyncio' (kew_build_info's label); 'none' outside a running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "none"
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the chosen loop."""
    try:
        factory = loop_factory()
    except EventLoopChoiceError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
