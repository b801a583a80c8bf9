"""Run the real daemon in-process against a double, and stop it cleanly."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.daemon import Daemon
from kube_event_watcher.kube.watching import WatchSettings
from kube_event_watcher.notifiers.base import Notifier
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.state.base import StateStore
from tests.support.recording import RecordingNotifier

# The event-source tests look at occurrences one by one: no grouping, no lookups, no port.
EVENT_SOURCE_DEFAULTS: dict[str, Any] = {
    "state": {"backend": "memory"},
    "ops": {"listen": ""},
    "aggregation": {"enabled": False},
    "enrichment": {"enabled": False},
    # Routing sends to receivers by name: the name of the RecordingNotifier the tests hand in.
    "receivers": [{"name": "recorder", "type": "stdout"}],
}

FAST = WatchSettings(backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.0, stall_timeout=5.0)


async def no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


@asynccontextmanager
async def running_daemon(
    kubeconfig: Path,
    store: StateStore,
    notifier: RecordingNotifier | list[Notifier],
    config: dict[str, Any] | None = None,
    settings: WatchSettings = FAST,
    sleep: Any = no_sleep,
    clock: Clock | None = None,
    spool_dir: Path | None = None,
    **daemon_options: Any,
) -> AsyncIterator[Daemon]:
    """The daemon until the block ends, then stopped (SIGTERM's path). `spool_dir` keeps the
    spool across runs (a restart); by default each run has its own."""
    loaded = parse_config(
        {**EVENT_SOURCE_DEFAULTS, **(config or {})}, "test", config_models(), env={}
    )
    spool = tempfile.TemporaryDirectory(prefix="kew-spool-")
    daemon = Daemon(
        loaded,
        kubeconfig=str(kubeconfig),
        store=store,
        notifiers=notifier if isinstance(notifier, list) else [notifier],
        env={},
        sleep=sleep,
        settings=settings,
        spool_dir=spool_dir or Path(spool.name),
        clock=clock,
        **daemon_options,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED, timeout=10)
    if task.done():
        ready.cancel()
        task.result()
    try:
        yield daemon
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        finally:
            spool.cleanup()
