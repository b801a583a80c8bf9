"""Two clusters in one daemon: the cluster's name is on every alert and routes can use it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kube_event_watcher.config.loading import parse_config
from kube_event_watcher.daemon import Daemon
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble, serving_double
from tests.support.daemon import EVENT_SOURCE_DEFAULTS, FAST, no_sleep
from tests.support.recording import RecordingNotifier
from tests.support.tls import TestCA


async def test_two_clusters_are_watched_and_routed_by_name(
    api_double: RunningDouble, tmp_path: Path, test_ca: TestCA
) -> None:
    async with serving_double(tmp_path / "west", test_ca) as west:
        config = {
            **EVENT_SOURCE_DEFAULTS,
            "clusters": [
                {"name": "east", "kubeconfig": str(api_double.kubeconfig)},
                {"name": "west", "kubeconfig": str(west.kubeconfig)},
            ],
            "receivers": [
                {"name": "east-team", "type": "stdout"},
                {"name": "west-team", "type": "stdout"},
            ],
            "routes": {
                "receiver": "east-team",
                "routes": [{"matchers": ['cluster="west"'], "receiver": "west-team"}],
            },
        }
        loaded = parse_config(config, "test", config_models(), env={})
        east_team, west_team = RecordingNotifier("east-team"), RecordingNotifier("west-team")
        daemon = Daemon(
            loaded,
            store=MemoryStore(),
            notifiers=[east_team, west_team],
            env={},
            sleep=no_sleep,
            settings=FAST,
            spool_dir=tmp_path / "spool",
        )
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            await api_double.api.wait_watches(1)
            await west.api.wait_watches(1)
            from_east = await api_double.api.create_event("default", "BackOff", "web-0")
            from_west = await west.api.create_event("default", "BackOff", "web-0")
            await east_team.wait_for(1)
            await west_team.wait_for(1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert [(a.cluster, a.occurrences[0].uid) for a in east_team.alerts] == [
        ("east", from_east["metadata"]["uid"])
    ]
    assert [(a.cluster, a.occurrences[0].uid) for a in west_team.alerts] == [
        ("west", from_west["metadata"]["uid"])
    ]
    assert {w.scope.cluster for w in daemon.watches} == {"east", "west"}
