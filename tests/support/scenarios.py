"""Scenarios that run against both the API double and the real kube-apiserver.

The double can only agree with our own reading of the API; running the same scenarios on the
real server keeps it honest. Each scenario drives a `EventCluster` and the in-process daemon,
scoped to a namespace of its own, and asserts the exact delivered sequence.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from kube_event_watcher.state.file import FileStore
from tests.support.daemon import FAST, running_daemon
from tests.support.recording import RecordingNotifier


class EventCluster(Protocol):
    kubeconfig: Path

    async def new_namespace(self) -> str: ...

    async def create_event(self, namespace: str, reason: str, regarding: str) -> dict[str, Any]: ...

    async def repeat_event(self, event: dict[str, Any], count: int) -> None: ...

    async def delete_event(self, event: dict[str, Any]) -> None: ...

    async def compact(self) -> None:
        """Make every resourceVersion seen so far too old (a real or simulated compaction)."""

    async def interrupt_watches(self) -> None:
        """Drop every open watch (the double cuts the streams; the real server is killed)."""


def uid(event: dict[str, Any]) -> str:
    return str(event["metadata"]["uid"])


def config_for(namespace: str, state: Path) -> dict[str, Any]:
    return {
        "sources": [{"namespaces": [namespace]}],
        "state": {"backend": "file", "path": str(state)},
    }


async def in_order_once(cluster: EventCluster, tmp_path: Path) -> None:
    ns = await cluster.new_namespace()
    recorder = RecordingNotifier()
    store = FileStore(str(tmp_path / "state"))
    async with running_daemon(cluster.kubeconfig, store, recorder, config_for(ns, tmp_path)) as d:
        await d.runners[0].wait_watching()
        created = [await cluster.create_event(ns, "BackOff", f"web-{i}") for i in range(5)]
        await recorder.wait_for(5, timeout=30)
        marker = await cluster.create_event(ns, "Marker", "m")
        await recorder.wait_for(6, timeout=30)
    assert recorder.event_uids == [uid(e) for e in [*created, marker]]
    assert recorder.alerts[0].regarding.describe() == f"Pod/{ns}/web-0"


async def series_growth(cluster: EventCluster, tmp_path: Path) -> None:
    ns = await cluster.new_namespace()
    recorder = RecordingNotifier()
    store = FileStore(str(tmp_path / "state"))
    async with running_daemon(cluster.kubeconfig, store, recorder, config_for(ns, tmp_path)) as d:
        await d.runners[0].wait_watching()
        event = await cluster.create_event(ns, "BackOff", "web-0")
        await recorder.wait_for(1, timeout=30)
        await cluster.repeat_event(event, 2)
        await recorder.wait_for(2, timeout=30)
        await cluster.repeat_event(event, 5)
        await recorder.wait_for(3, timeout=30)
    assert [(a.count, a.occurrences[0].total) for a in recorder.alerts] == [(1, 1), (1, 2), (3, 5)]


async def watch_interrupted(cluster: EventCluster, tmp_path: Path) -> None:
    ns = await cluster.new_namespace()
    recorder = RecordingNotifier()
    store = FileStore(str(tmp_path / "state"))
    settings = replace(FAST, backoff_initial=0.2, backoff_max=1.0)
    async with running_daemon(
        cluster.kubeconfig,
        store,
        recorder,
        config_for(ns, tmp_path),
        settings=settings,
        sleep=asyncio.sleep,
    ) as d:
        await d.runners[0].wait_watching()
        before = [await cluster.create_event(ns, "BackOff", f"a-{i}") for i in range(2)]
        await recorder.wait_for(2, timeout=30)
        await cluster.interrupt_watches()
        after = [await cluster.create_event(ns, "BackOff", f"b-{i}") for i in range(2)]
        await recorder.wait_for(4, timeout=60)
        assert d.watches[0].reconnects + d.watches[0].relists >= 1
    assert recorder.event_uids == [uid(e) for e in [*before, *after]]


async def restart_catch_up(cluster: EventCluster, tmp_path: Path, *, compact: bool) -> None:
    """Stop the daemon; things happen (and, with `compact`, our resourceVersion is compacted
    away: a real 410 → relist); restart: exactly what is new is delivered."""
    ns = await cluster.new_namespace()
    state = tmp_path / "state"
    first = RecordingNotifier()
    async with running_daemon(
        cluster.kubeconfig, FileStore(str(state)), first, config_for(ns, tmp_path)
    ) as d:
        await d.runners[0].wait_watching()
        seen = [await cluster.create_event(ns, "BackOff", f"web-{i}") for i in range(3)]
        await first.wait_for(3, timeout=30)
    down = [await cluster.create_event(ns, "FailedMount", f"late-{i}") for i in range(2)]
    await cluster.repeat_event(seen[1], 3)
    await cluster.delete_event(seen[0])
    if compact:
        await cluster.compact()
    second = RecordingNotifier()
    async with running_daemon(
        cluster.kubeconfig, FileStore(str(state)), second, config_for(ns, tmp_path)
    ) as d:
        await second.wait_for(3, timeout=30)
        marker = await cluster.create_event(ns, "Marker", "m")
        await second.wait_for(4, timeout=30)
        relists = d.watches[0].relists
        assert uid(seen[0]) not in d.runners[0].checkpoint.ledger or not compact
    assert sorted(second.event_uids[:3]) == sorted([uid(down[0]), uid(down[1]), uid(seen[1])])
    assert second.event_uids[3] == uid(marker)
    assert [a.count for a in second.alerts if a.occurrences[0].uid == uid(seen[1])] == [2]
    assert len(second.alerts) == 4
    if compact:
        assert relists == 1


def unique_namespace() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"
