"""The self-alert decision: alert once when a watch stays stale, resolve once when fresh."""

from __future__ import annotations

from dataclasses import replace

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.ops.health import (
    SELF_ALERT_REASON,
    StaleWatchMonitor,
    WatchStatus,
    readiness,
)

PROD = WatchStatus("watch.prod._all.a1", "prod", None, "prod: all namespaces", True, 0.0)


def test_stale_watch_alerts_once_then_resolves_once() -> None:
    clock = FakeClock()
    monitor = StaleWatchMonitor(stale_after=600, receiver="oncall")
    watch = PROD
    assert monitor.check([watch], clock.monotonic(), clock.now()) == []
    clock.advance(600)
    assert monitor.check([watch], clock.monotonic(), clock.now()) == []  # at the limit: fine
    clock.advance(1)
    [firing] = monitor.check([watch], clock.monotonic(), clock.now())
    assert firing.status == "firing"
    assert firing.reason == SELF_ALERT_REASON
    assert firing.cluster == "prod"
    assert firing.type == "Warning"
    assert "prod: all namespaces" in firing.note
    assert "no event, bookmark or relist for 10m1s" in firing.note
    assert firing.facts["receiver"] == "oncall"
    clock.advance(300)
    assert monitor.check([watch], clock.monotonic(), clock.now()) == []  # no repeats

    watch = replace(watch, last_activity=clock.monotonic())
    [resolved] = monitor.check([watch], clock.monotonic(), clock.now())
    assert resolved.status == "resolved"
    assert resolved.key == firing.key
    assert resolved.notification_id != firing.notification_id
    assert resolved.first_seen == firing.first_seen
    assert monitor.check([watch], clock.monotonic(), clock.now()) == []


def test_same_episode_keeps_its_notification_id_across_monitors() -> None:
    """A restarted daemon that decides the same thing sends the same id (dedup downstream)."""
    a, b = StaleWatchMonitor(60, "oncall"), StaleWatchMonitor(60, "oncall")
    [x] = a.check([replace(PROD, last_activity=None)], 0.0, 1000.0)
    [y] = b.check([replace(PROD, last_activity=None)], 0.0, 1000.0)
    assert x.notification_id == y.notification_id


def test_never_established_watch_gets_the_grace_of_stale_after() -> None:
    monitor = StaleWatchMonitor(stale_after=600, receiver="oncall")
    starting = replace(PROD, established=False, last_activity=None)
    assert monitor.check([starting], 100.0, 0.0) == []
    assert monitor.check([starting], 700.0, 600.0) == []
    [firing] = monitor.check([starting], 701.0, 601.0)
    assert "not established yet" in firing.note


def test_a_scope_namespace_is_the_alert_namespace() -> None:
    watch = WatchStatus("w", "edge", "kube-system", "edge: kube-system", True, None)
    [alert] = StaleWatchMonitor(60, "oncall").check([watch], 0.0, 0.0)
    assert (alert.namespace, alert.regarding.kind, alert.regarding.name) == (
        "kube-system",
        "EventWatch",
        "w",
    )


def test_watch_removed_by_reload_is_forgotten() -> None:
    monitor = StaleWatchMonitor(60, "oncall")
    stale = replace(PROD, last_activity=None)
    assert len(monitor.check([stale], 0.0, 0.0)) == 1
    assert monitor.check([], 1.0, 1.0) == []
    assert len(monitor.check([stale], 2.0, 2.0)) == 1  # a new episode if it comes back stale


def test_readiness_needs_every_watch_fresh() -> None:
    fresh = replace(PROD, last_activity=100.0)
    stale = replace(PROD, name="other", last_activity=0.0)
    assert readiness([fresh], 500.0, 600).ready
    result = readiness([fresh, stale], 650.0, 600)
    assert not result.ready
    assert result.as_json()["stale"] == ["other"]
    assert not readiness([], 0.0, 600).ready
