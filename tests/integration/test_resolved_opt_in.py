"""Resolved notifications go only to receivers that want them (opt-in per receiver)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.daemon import Daemon
from kube_event_watcher.notifiers.dingtalk import DingTalkNotifier
from kube_event_watcher.notifiers.pagerduty import PagerDutyNotifier
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble
from tests.support.daemon import EVENT_SOURCE_DEFAULTS, FAST, no_sleep
from tests.support.recording import RecordingNotifier


def test_incident_systems_want_resolves_by_default_chat_rooms_do_not() -> None:
    assert PagerDutyNotifier.resolved_by_default
    assert not DingTalkNotifier.resolved_by_default
    assert RecordingNotifier("x", send_resolved=False).sends_resolved is False
    assert RecordingNotifier("x", send_resolved=None).sends_resolved is True


async def test_a_chat_room_gets_the_firing_alert_an_incident_system_also_the_resolve(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    config = {
        **EVENT_SOURCE_DEFAULTS,
        "receivers": [{"name": "pager", "type": "stdout"}, {"name": "room", "type": "stdout"}],
        "aggregation": {
            "group": {"wait": "100ms", "interval": "1s", "resolve_after": "400ms"},
            "dedup": {"window": "300ms"},
        },
    }
    pager = RecordingNotifier("pager")
    room = RecordingNotifier("room", send_resolved=False)
    daemon = Daemon(
        parse_config(config, "test", config_models(), env={}),
        store=MemoryStore(),
        notifiers=[pager, room],
        kubeconfig=str(api_double.kubeconfig),
        env={},
        sleep=no_sleep,
        settings=FAST,
        spool_dir=tmp_path / "spool",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await daemon.ready.wait()
        await daemon.runners[0].wait_watching()
        await api_double.api.create_event("default", "BackOff", "web-7d4b9c-aaaaa")
        await pager.wait_for(2)  # firing, then resolved once the group is quiet
        await room.wait_for(1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [a.status for a in pager.alerts] == ["firing", "resolved"]
    assert [a.status for a in room.alerts] == ["firing"]
