"""The object watch's consumer: cache, detectors and their checkpoint, without an API."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.detectors import DetectorsConfig
from kube_event_watcher.config.schema import SourceConfig
from kube_event_watcher.daemon import ObjectRunner, object_scopes
from kube_event_watcher.kube.objects import (
    PODS,
    ClusterObjects,
    Interner,
    decode_pod,
    pod_from_wire,
)
from kube_event_watcher.kube.watching import WatchScope
from kube_event_watcher.pipeline.detect import Detector
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import Occurrence
from kube_event_watcher.state.memory import MemoryStore
from tests.fixtures import load_object


def wire(obj: dict[str, Any]) -> Any:
    return decode_pod(orjson.dumps(obj))


async def runner(store: MemoryStore, **config: Any) -> tuple[ObjectRunner, list[Occurrence]]:
    found: list[Occurrence] = []

    async def intake(occurrence: Occurrence) -> None:
        found.append(occurrence)

    async def commit() -> None:
        pass

    interner = Interner()
    made = ObjectRunner(
        WatchScope("prod", None, None, PODS),
        ClusterObjects().pod_store(None),
        lambda pod: pod_from_wire(pod, interner),
        Detector("prod", SeenLedger(), DetectorsConfig(enabled=True, **config)),
        store,
        intake,
        FakeClock(),
        asyncio.Lock(),
        commit,
    )
    await made.load()
    return made, found


async def test_updates_that_find_nothing_new_write_no_checkpoint() -> None:
    store = MemoryStore()
    r, found = await runner(store)
    await r.on_list_start()
    await r.on_listed([wire(load_object("pod-bare"))], "10")
    await r.on_list_done("10")
    document, _ = r.take(False)
    assert document is not None  # a first start's baseline is saved
    crash = load_object("pod-crashloop")
    await r.on_change("ADDED", wire(crash), "11")
    assert [o.reason for o in found] == ["CrashLoopBackOff"]
    assert r.take(False) != (None, None)
    crash["metadata"]["labels"]["touched"] = "yes"
    for rv in range(12, 30):
        await r.on_change("MODIFIED", wire(crash), str(rv))
    assert r.take(False) == (None, None)
    assert len(found) == 1


async def test_a_restart_from_the_checkpoint_reports_nothing_twice() -> None:
    store = MemoryStore()
    first, found = await runner(store)
    await first.on_list_start()
    await first.on_listed([], "10")
    await first.on_list_done("10")
    await first.on_change("ADDED", wire(load_object("pod-oomkilled")), "11")
    document, _ = first.take(True)
    assert document is not None and len(found) == 1
    await store.save({first.scope.id: document}, {}, full=True)
    again, refound = await runner(store)
    assert again.detector is not None and not again.detector.baseline
    await again.on_list_start()
    await again.on_listed([wire(load_object("pod-oomkilled"))], "20")
    await again.on_list_done("20")
    assert refound == []


async def test_report_existing_reports_what_a_first_start_lists() -> None:
    for report, expected in ((False, []), (True, ["OOMKilled"])):
        r, found = await runner(MemoryStore(), report_existing=report)
        await r.on_list_start()
        await r.on_listed([wire(load_object("pod-oomkilled"))], "10")
        await r.on_list_done("10")
        assert [o.reason for o in found] == expected


async def test_a_malformed_pod_is_skipped_and_the_rest_of_the_page_kept() -> None:
    r, _ = await runner(MemoryStore())
    anonymous = load_object("pod-crashloop")
    del anonymous["metadata"]["uid"]
    await r.on_list_start()
    await r.on_listed([wire(anonymous), wire(load_object("pod-bare"))], "10")
    await r.on_list_done("10")
    assert r.malformed == 1 and len(r.objects) == 1


def test_pods_are_watched_where_the_sources_watch_and_nodes_cluster_wide() -> None:
    scoped = [SourceConfig(namespaces=["shop", "pay"]), SourceConfig(namespaces=["shop"])]
    scopes = object_scopes("prod", scoped)
    assert [(s.resource.plural, s.namespace) for s in scopes] == [
        ("pods", "shop"),
        ("pods", "pay"),
        ("nodes", None),
    ]
    assert scopes[0].path == "/api/v1/namespaces/shop/pods"
    assert scopes[-1].path == "/api/v1/nodes"
    assert scopes[-1].describe() == "prod: nodes, cluster-wide"
    every = object_scopes("prod", [*scoped, SourceConfig()])
    assert [(s.resource.plural, s.namespace) for s in every] == [("pods", None), ("nodes", None)]
