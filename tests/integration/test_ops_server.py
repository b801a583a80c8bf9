"""The ops endpoint on a real loopback socket: readiness follows the stream's freshness under
an injected clock, /metrics exposes the stages' plain counters, /healthz reports loop lag."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import aiohttp
import pytest

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.ops import OpsConfig
from kube_event_watcher.ops.health import WatchStatus
from kube_event_watcher.ops.metrics import Histogram, Metrics
from kube_event_watcher.ops.server import LoopHeartbeat, OpsServer


@dataclass
class FakeWatches:
    """Stands in for the daemon's runners: the watches and when each last saw activity."""

    items: list[WatchStatus] = field(default_factory=list)

    def __call__(self) -> list[WatchStatus]:
        return list(self.items)

    def touch(self, name: str, at: float) -> None:
        self.items = [
            replace(w, last_activity=at, established=True) if w.name == name else w
            for w in self.items
        ]


@dataclass
class FakeWatchCounters:
    """The plain counters a watch keeps (what EventWatch exposes)."""

    reconnects: int = 0
    relists: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)


async def _forever(_: float) -> None:
    """The heartbeat's sleep: the test moves the clock instead, so ticks never land."""
    await asyncio.Event().wait()


@dataclass
class Ops:
    server: OpsServer
    watches: FakeWatches
    clock: FakeClock
    metrics: Metrics
    base: str


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    clock = FakeClock()
    watches = FakeWatches(
        [
            WatchStatus("watch.prod._all.a1", "prod", None, "prod: all namespaces", True, 0.0),
            WatchStatus(
                "watch.edge.kube-system.a1", "edge", "kube-system", "edge: kube-system", True, 0.0
            ),
        ]
    )
    metrics = Metrics()
    heartbeat = LoopHeartbeat(clock, sleep=_forever)
    server = OpsServer(
        OpsConfig(listen="127.0.0.1:0", stale_after="10m"), watches, metrics, clock, heartbeat
    )
    await server.start()
    try:
        yield Ops(server, watches, clock, metrics, f"http://127.0.0.1:{server.port}")
    finally:
        await server.stop()


async def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_readyz_turns_red_naming_the_stale_watch_then_green_again(ops: Ops) -> None:
    watches, clock, base = ops.watches, ops.clock, ops.base
    status, _, body = await get(f"{base}/readyz")
    assert status == 200
    assert '"ready": true' in body

    clock.advance(9 * 60)
    watches.touch("watch.prod._all.a1", clock.monotonic())  # prod gets a bookmark; edge nothing
    clock.advance(2 * 60)  # edge: 11 min silent
    status, content_type, body = await get(f"{base}/readyz")
    assert status == 503
    assert content_type.startswith("application/json")
    assert '"stale": [\n    "watch.edge.kube-system.a1"\n  ]' in body
    assert "no event, bookmark or relist for 11m (stale_after 10m)" in body

    watches.touch("watch.edge.kube-system.a1", clock.monotonic())  # a relist succeeded
    status, _, _ = await get(f"{base}/readyz")
    assert status == 200


async def test_readyz_is_red_before_the_first_list_and_with_no_watch(ops: Ops) -> None:
    watches, base = ops.watches, ops.base
    watches.items = [replace(watches.items[0], established=False, last_activity=None)]
    status, _, body = await get(f"{base}/readyz")
    assert status == 503
    assert "not established yet" in body
    watches.items = []
    status, _, body = await get(f"{base}/readyz")
    assert status == 503
    assert "no watch is running yet" in body


async def test_metrics_expose_counters_read_at_scrape_time(ops: Ops) -> None:
    clock, metrics, base = ops.clock, ops.metrics, ops.base
    counters = FakeWatchCounters()
    scope = {"cluster": "prod", "scope": "watch.prod._all.a1"}
    metrics.bind("watch_restarts", counters, "reconnects", **scope)
    metrics.bind("watch_relists", counters, "relists", **scope)
    metrics.bind("watch_events", counters, "events_by_type", key_label="type", **scope)
    counters.reconnects = 3
    counters.relists = 1
    counters.events_by_type.update({"ADDED": 40, "BOOKMARK": 2})
    clock.advance(30)

    status, content_type, text = await get(f"{base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=")
    assert 'kew_watch_restarts_total{cluster="prod",scope="watch.prod._all.a1"} 3.0' in text
    assert 'kew_watch_relists_total{cluster="prod",scope="watch.prod._all.a1"} 1.0' in text
    assert (
        'kew_watch_events_total{cluster="prod",scope="watch.prod._all.a1",type="ADDED"} 40.0'
        in text
    )
    assert (
        'kew_watch_last_activity_age_seconds{cluster="edge",scope="watch.edge.kube-system.a1"} 30.0'
        in text
    )
    assert 'kew_watch_up{cluster="prod",scope="watch.prod._all.a1"} 1.0' in text

    counters.reconnects = 4  # read again at the next scrape, no metric call on the hot path
    _, _, text = await get(f"{base}/metrics")
    assert 'kew_watch_restarts_total{cluster="prod",scope="watch.prod._all.a1"} 4.0' in text

    _, content_type, text = await get(f"{base}/metrics", "application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


async def test_healthz_reports_a_starved_event_loop(ops: Ops) -> None:
    clock, base = ops.clock, ops.base
    status, _, body = await get(f"{base}/healthz")
    assert status == 200
    clock.advance(15)  # no heartbeat tick for 15 s: the loop was blocked
    status, _, body = await get(f"{base}/healthz")
    assert status == 503
    assert "the event loop is 14.0s behind (limit 10s)" in body


async def test_heartbeat_measures_lag_from_its_own_ticks() -> None:
    clock = FakeClock()

    async def late_sleep(seconds: float) -> None:
        clock.advance(seconds + 2.5)
        raise _Stop

    beat = LoopHeartbeat(clock, interval=1.0, sleep=late_sleep)
    with pytest.raises(_Stop):
        await beat.run()
    assert beat.lag == 0.0  # the tick raised before it landed
    clock.advance(0)
    assert beat.behind() == pytest.approx(2.5)


class _Stop(Exception):
    pass


def test_metric_binding_catches_typos() -> None:
    metrics = Metrics()
    counters = FakeWatchCounters()
    with pytest.raises(ValueError, match="unknown metric 'watch_restart'"):
        metrics.bind("watch_restart", counters, "reconnects", cluster="a", scope="b")
    with pytest.raises(ValueError, match=r"has labels \['cluster', 'scope'\]"):
        metrics.bind("watch_restarts", counters, "reconnects", cluster="a")
    with pytest.raises(ValueError, match="has no attribute 'restarts'"):
        metrics.bind("watch_restarts", counters, "restarts", cluster="a", scope="b")


def test_unbind_forgets_a_replaced_stage() -> None:
    metrics = Metrics()
    old, new = FakeWatchCounters(reconnects=5), FakeWatchCounters(reconnects=1)
    metrics.bind("watch_restarts", old, "reconnects", cluster="a", scope="b")
    metrics.bind("watch_restarts", new, "reconnects", cluster="a", scope="b")
    assert b'kew_watch_restarts_total{cluster="a",scope="b"} 6.0' in metrics.render()[0]
    metrics.unbind(old)
    assert b'kew_watch_restarts_total{cluster="a",scope="b"} 1.0' in metrics.render()[0]


async def test_busy_port_is_explained() -> None:
    clock = FakeClock()
    first = OpsServer(OpsConfig(listen="127.0.0.1:0"), FakeWatches(), Metrics(), clock)
    await first.start()
    try:
        second = OpsServer(
            OpsConfig(listen=f"127.0.0.1:{first.port}"), FakeWatches(), Metrics(), clock
        )
        with pytest.raises(OSError, match=r"cannot listen .* set ops.listen"):
            await second.start()
    finally:
        await first.stop()


def test_a_histogram_renders_cumulative_buckets_summed_over_its_bindings() -> None:
    metrics = Metrics()
    first, second = Histogram((1.0, 10.0)), Histogram((1.0, 10.0))
    for seconds in (0.5, 1.0, 3.0):  # 1.0 falls in le="1" (Prometheus buckets are <=)
        first.observe(seconds)
    second.observe(60.0)
    owner_a, owner_b = object(), object()
    metrics.bind("delivery_latency_seconds", owner_a, lambda: first, receiver="slack")
    metrics.bind("delivery_latency_seconds", owner_b, lambda: second, receiver="slack")
    text = metrics.render()[0].decode()
    assert 'kew_delivery_latency_seconds_bucket{le="1",receiver="slack"} 2.0' in text
    assert 'kew_delivery_latency_seconds_bucket{le="10",receiver="slack"} 3.0' in text
    assert 'kew_delivery_latency_seconds_bucket{le="+Inf",receiver="slack"} 4.0' in text
    assert 'kew_delivery_latency_seconds_count{receiver="slack"} 4.0' in text
    assert 'kew_delivery_latency_seconds_sum{receiver="slack"} 64.5' in text
