"""The event source against the API double: every occurrence exactly once, whatever happens."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kube_event_watcher.state.file import FileStore
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble
from tests.support.apidouble import Fault
from tests.support.daemon import EVENT_SOURCE_DEFAULTS, FAST, running_daemon
from tests.support.recording import RecordingNotifier


async def test_events_created_after_start_arrive_once_in_order(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder):
        await api.wait_watches(1)
        created = [await api.create_event("default", "BackOff", f"web-{i}") for i in range(5)]
        await recorder.wait_for(5)
    assert recorder.event_uids == [e["metadata"]["uid"] for e in created]
    assert [a.reason for a in recorder.alerts] == ["BackOff"] * 5
    assert recorder.alerts[0].regarding.describe() == "Pod/default/web-0"


async def test_first_start_skips_history(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    await api.create_event("default", "Old", "web-0", event_time=1_000_000.0)
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder):
        await api.wait_watches(1)
        fresh = await api.create_event("default", "Fresh", "web-1")
        await recorder.wait_for(1)
    assert recorder.event_uids == [fresh["metadata"]["uid"]]


async def test_series_growth_is_a_new_occurrence_other_changes_are_not(
    api_double: RunningDouble,
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder):
        await api.wait_watches(1)
        event = await api.create_event("default", "BackOff", "web-0")
        await api.touch_event(event)  # a modification that is not a repeat
        await api.repeat_event(event, count=2)
        await api.repeat_event(event, count=5)
        await recorder.wait_for(3)
        marker = await api.create_event("default", "Marker", "web-9")
        await recorder.wait_for(4)
    assert [(a.reason, a.count) for a in recorder.alerts] == [
        ("BackOff", 1),
        ("BackOff", 1),
        ("BackOff", 3),
        ("Marker", 1),
    ]
    assert recorder.event_uids[-1] == marker["metadata"]["uid"]


async def test_every_occurrence_once_across_repeated_disconnects(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    for _ in range(3):
        api.inject("watch", Fault("disconnect_after", lines=2))
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder) as daemon:
        await api.wait_watches(1)
        created = [await api.create_event("ns1", "Failed", f"job-{i}") for i in range(9)]
        await recorder.wait_for(9)
        tail = await api.create_event("ns1", "Failed", "job-last")
        await recorder.wait_for(10)
        reconnects = daemon.watches[0].reconnects
    assert recorder.event_uids == [e["metadata"]["uid"] for e in [*created, tail]]
    assert reconnects >= 3
    # Each reconnect resumed from the last object seen, not from scratch.
    resumed = [p["resourceVersion"] for p in api.stats.watch_params[1:4]]
    assert resumed == sorted(resumed, key=int) and len(set(resumed)) == 3


async def test_relist_after_410_delivers_the_gap_once(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder) as daemon:
        await api.wait_watches(1)
        before = [await api.create_event("default", "BackOff", f"a-{i}") for i in range(3)]
        await recorder.wait_for(3)
        api.watch_gate.clear()  # the API server is unreachable for watches
        api.cut_watches()
        gap = [await api.create_event("default", "BackOff", f"b-{i}") for i in range(4)]
        await api.repeat_event(before[0], count=3)
        api.compact()  # our resourceVersion is gone: the next watch gets ERROR 410
        api.watch_gate.set()
        await recorder.wait_for(3 + 4 + 1)
        after = await api.create_event("default", "BackOff", "c-0")
        await recorder.wait_for(9)
        relists = daemon.watches[0].relists
    delivered = recorder.event_uids
    assert delivered[:3] == [e["metadata"]["uid"] for e in before]
    assert sorted(delivered[3:8]) == sorted(
        [e["metadata"]["uid"] for e in gap] + [before[0]["metadata"]["uid"]]
    )
    assert delivered[8] == after["metadata"]["uid"]
    assert [
        a.count for a in recorder.alerts if a.occurrences[0].uid == before[0]["metadata"]["uid"]
    ] == [1, 2]
    assert relists == 1
    assert api.stats.lists == 2


async def test_a_malformed_listed_event_costs_only_itself(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    with capture_logs() as logs:
        async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder) as daemon:
            await api.wait_watches(1)
            api.watch_gate.clear()
            api.cut_watches()
            gap = [await api.create_event("default", "BackOff", f"b-{i}") for i in range(3)]
            api.compact()
            api.inject("list", Fault("malformed_item", lines=1))
            api.watch_gate.set()
            await recorder.wait_for(2)
            after = await api.create_event("default", "BackOff", "c-0")
            await recorder.wait_for(3)
            skipped = daemon.watches[0].skipped_lines
    expected = [gap[0], gap[2], after]
    assert recorder.event_uids == [e["metadata"]["uid"] for e in expected]
    assert skipped == 1
    [error] = [e for e in logs if e["event"] == "malformed listed event skipped"]
    assert "Expected `str | null`, got `int` - at `$.reason`" in error["error"]
    assert '"name":"b-1.' in error["item"]


async def test_expired_watch_as_http_410_also_relists(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    api.expired_watch_as_http = True
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder) as daemon:
        await api.wait_watches(1)
        api.watch_gate.clear()
        api.cut_watches()
        missed = await api.create_event("default", "Evicted", "p-1")
        api.compact()
        api.watch_gate.set()
        await recorder.wait_for(1)
        assert daemon.watches[0].relists == 1
    assert recorder.event_uids == [missed["metadata"]["uid"]]


async def test_restart_resumes_from_checkpoint(api_double: RunningDouble, tmp_path: Path) -> None:
    api = api_double.api
    store_dir = tmp_path / "state"
    first = RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, FileStore(str(store_dir)), first):
        await api.wait_watches(1)
        seen = [await api.create_event("default", "BackOff", f"web-{i}") for i in range(3)]
        await first.wait_for(3)
    # While we are down: two new events and a repeat of a known one.
    down = [await api.create_event("default", "BackOff", f"late-{i}") for i in range(2)]
    await api.repeat_event(seen[1], count=4)
    second = RecordingNotifier()
    lists_before = api.stats.lists
    async with running_daemon(api_double.kubeconfig, FileStore(str(store_dir)), second):
        await second.wait_for(3)
        marker = await api.create_event("default", "Marker", "m")
        await second.wait_for(4)
    assert api.stats.lists == lists_before  # resumed the watch, no relist needed
    assert second.event_uids == [
        down[0]["metadata"]["uid"],
        down[1]["metadata"]["uid"],
        seen[1]["metadata"]["uid"],
        marker["metadata"]["uid"],
    ]
    assert second.alerts[2].count == 3


async def test_restart_after_410_while_down_catches_up_exactly(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    api = api_double.api
    store_dir = str(tmp_path / "state")
    first = RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, FileStore(store_dir), first):
        await api.wait_watches(1)
        seen = [await api.create_event("default", "BackOff", f"web-{i}") for i in range(3)]
        await first.wait_for(3)
    down = [await api.create_event("default", "FailedMount", f"late-{i}") for i in range(3)]
    await api.repeat_event(seen[2], count=2)
    await api.delete_event(seen[0])  # expired by TTL while we were down
    api.compact()
    second = RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, FileStore(store_dir), second) as daemon:
        await second.wait_for(4)
        marker = await api.create_event("default", "Marker", "m")
        await second.wait_for(5)
        ledger = daemon.runners[0].checkpoint.ledger
        assert seen[0]["metadata"]["uid"] not in ledger
    expected_gap = sorted([e["metadata"]["uid"] for e in down] + [seen[2]["metadata"]["uid"]])
    assert sorted(second.event_uids[:4]) == expected_gap
    assert second.event_uids[4] == marker["metadata"]["uid"]


async def test_paged_list_restarts_when_continue_token_expires(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    paged = replace(FAST, page_size=2)
    async with running_daemon(
        api_double.kubeconfig, MemoryStore(), recorder, settings=paged
    ) as daemon:
        await api.wait_watches(1)
        created = [await api.create_event("default", "BackOff", f"w-{i}") for i in range(5)]
        await recorder.wait_for(5)
        # Force a relist whose second page meets a compaction.
        api.inject("list", Fault("none"))
        api.inject("list", Fault("compact"))
        api.watch_gate.clear()
        api.cut_watches()
        gap = await api.create_event("default", "BackOff", "w-gap")
        api.compact()
        api.watch_gate.set()
        await api.wait_watches(3)
        marker = await api.create_event("default", "Marker", "m")
        await recorder.wait_for(7)
        relists = daemon.watches[0].relists
    assert recorder.event_uids == [
        *(e["metadata"]["uid"] for e in created),
        gap["metadata"]["uid"],
        marker["metadata"]["uid"],
    ]
    continues = [p for p in api.stats.list_params if "continue" in p]
    assert continues, "the relist should have been paged"
    assert relists == 2  # the 410 on the watch, and the expired continue token


async def test_stalled_stream_is_noticed_and_reconnected(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    settings = replace(FAST, stall_timeout=0.3)
    api.inject("watch", Fault("stall"))
    async with running_daemon(
        api_double.kubeconfig, MemoryStore(), recorder, settings=settings
    ) as daemon:
        await api.wait_watches(2)
        event = await api.create_event("default", "BackOff", "web-0")
        await recorder.wait_for(1)
        assert daemon.watches[0].reconnects == 1
    assert recorder.event_uids == [event["metadata"]["uid"]]


async def test_malformed_and_overlong_lines_are_skipped_with_an_error(
    api_double: RunningDouble,
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    api.inject("watch", Fault("malformed", lines=1))
    with capture_logs() as logs:
        async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder) as daemon:
            await api.wait_watches(1)
            events = [await api.create_event("default", "BackOff", f"w-{i}") for i in range(3)]
            await recorder.wait_for(3)
            skipped = daemon.watches[0].skipped_lines
    assert recorder.event_uids == [e["metadata"]["uid"] for e in events]
    assert skipped == 1
    assert any(entry["event"] == "malformed watch line skipped" for entry in logs)

    api.inject("watch", Fault("long_line", lines=1, size=200_000))
    recorder2 = RecordingNotifier()
    small = replace(FAST, max_line_bytes=64 * 1024)
    with capture_logs() as logs:
        async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder2, settings=small):
            await api.wait_watches(2)
            more = [await api.create_event("default", "BackOff", f"x-{i}") for i in range(2)]
            await recorder2.wait_for(2)
    assert recorder2.event_uids == [e["metadata"]["uid"] for e in more]
    too_long = [e for e in logs if e["event"] == "watch line too long, object skipped"]
    assert len(too_long) == 1
    assert too_long[0]["object_name"] == "huge-event"


async def test_unauthorized_is_reported_once(api_double: RunningDouble, tmp_path: Path) -> None:
    from tests.conftest import write_kubeconfig

    ca_pem = api_double.ca_file.read_bytes()
    bad = write_kubeconfig(tmp_path / "bad", api_double.url, ca_pem, {"token": "wrong-token-xyz"})
    attempts = 0
    recorder = RecordingNotifier()
    stop_after = 5

    async def counting_sleep(_seconds: float) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == stop_after:
            api_double.api.token = "wrong-token-xyz"  # credentials fixed: the next try works

    with capture_logs() as logs:
        async with running_daemon(bad, MemoryStore(), recorder, sleep=counting_sleep):
            await api_double.api.wait_watches(1)
    refused = [e for e in logs if e["event"] == "the API server refused the event watch"]
    assert len(refused) == 1
    assert refused[0]["status"] == 401
    assert "credentials" in refused[0]["fix"]
    assert attempts == stop_after


async def test_field_selector_is_sent_to_the_server(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    config = {
        "state": {"backend": "memory"},
        "sources": [{"field_selector": "type=Warning,reason!=Pulled", "namespaces": ["a", "b"]}],
    }
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder, config) as daemon:
        await api.wait_watches(2)
        await api.create_event("a", "Pulled", "p")
        await api.create_event("c", "BackOff", "p")  # not a watched namespace
        await api.create_event("a", "Normalish", "p", type="Normal")
        wanted = [
            await api.create_event("b", "BackOff", "p"),
            await api.create_event("a", "BackOff", "q"),
        ]
        await recorder.wait_for(2)
        assert len(daemon.watches) == 2
    assert sorted(recorder.event_uids) == sorted(e["metadata"]["uid"] for e in wanted)
    assert {p["fieldSelector"] for p in api.stats.watch_params} == {"type=Warning,reason!=Pulled"}


async def test_bookmark_advances_the_checkpoint(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    store = MemoryStore()
    async with running_daemon(api_double.kubeconfig, store, recorder) as daemon:
        await api.wait_watches(1)
        await api.create_event("default", "BackOff", "w")
        await recorder.wait_for(1)
        api.inject("watch", Fault("bookmark"))
        api.cut_watches()
        await api.wait_watches(2)
        other = await api.create_event("default", "BackOff", "w2")
        await recorder.wait_for(2)
    runner = daemon.runners[0]
    assert runner.checkpoint.resource_version == other["metadata"]["resourceVersion"]
    assert store.documents[runner.scope.id]


@pytest.mark.parametrize("namespaced", [False, True])
async def test_delete_prunes_the_ledger(api_double: RunningDouble, namespaced: bool) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    config = (
        {"state": {"backend": "memory"}, "sources": [{"namespaces": ["default"]}]}
        if namespaced
        else None
    )
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder, config) as daemon:
        await api.wait_watches(1)
        event = await api.create_event("default", "BackOff", "w")
        await recorder.wait_for(1)
        assert event["metadata"]["uid"] in daemon.runners[0].checkpoint.ledger
        await api.delete_event(event)
        await api.create_event("default", "Marker", "m")
        await recorder.wait_for(2)
        assert event["metadata"]["uid"] not in daemon.runners[0].checkpoint.ledger


async def test_in_cluster_service_account_path(api_double: RunningDouble, tmp_path: Path) -> None:
    """The pod code path: KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA."""
    from kube_event_watcher.config.loading import parse_config
    from kube_event_watcher.daemon import Daemon
    from kube_event_watcher.notifiers.registry import config_models
    from tests.support.daemon import no_sleep

    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(api_double.api.token)
    (sa / "ca.crt").write_bytes(api_double.ca_file.read_bytes())
    loaded = parse_config(
        {
            **EVENT_SOURCE_DEFAULTS,
            "clusters": [{"name": "in", "in_cluster": True, "service_account_dir": str(sa)}],
        },
        "test",
        config_models(),
        env={},
    )
    recorder = RecordingNotifier()
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api_double.port)}
    daemon = Daemon(
        loaded,
        store=MemoryStore(),
        notifiers=[recorder],
        env=env,
        sleep=no_sleep,
        settings=FAST,
        spool_dir=tmp_path / "spool",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await api_double.api.wait_watches(1)
        event = await api_double.api.create_event("default", "BackOff", "web")
        await recorder.wait_for(1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert recorder.event_uids == [event["metadata"]["uid"]]
    assert recorder.alerts[0].cluster == "in"


async def test_server_errors_are_retried_and_403_is_explained_once(
    api_double: RunningDouble,
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    api.inject("list", Fault("http", status=500))
    api.inject("list", Fault("http", status=403))
    api.inject("list", Fault("http", status=403))
    api.inject("watch", Fault("http", status=503))
    with capture_logs() as logs:
        async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder) as daemon:
            await daemon.runners[0].wait_watching()
            event = await api.create_event("default", "BackOff", "web")
            await recorder.wait_for(1)
            reconnects = daemon.watches[0].reconnects
    assert recorder.event_uids == [event["metadata"]["uid"]]
    assert reconnects == 4  # 500, 403, 403 on the list; 503 on the watch
    refused = [e for e in logs if e["event"] == "the API server refused the event watch"]
    assert len(refused) == 1
    assert refused[0]["status"] == 403
    assert "ClusterRole" in refused[0]["fix"] and "events" in refused[0]["fix"]
