"""The notify stage with scripted notifiers and fake time: order, retries, limits, digests,
independence of receivers, and nothing lost across a stop."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from structlog.typing import EventDict

from kube_event_watcher.config.delivery import DeliveryConfig, RateLimitConfig
from kube_event_watcher.notifiers.base import Notifier, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.delivery import DeliveryStage, ReceiverLane
from tests.factories import numbered_alert
from tests.notifiers_support import (
    BatchingNotifier,
    FakeTime,
    NoDigestNotifier,
    ScriptedNotifier,
    answers,
    ids,
    until,
)

StageFactory = Callable[..., DeliveryStage]


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make_stage(tmp_path: Path, time: FakeTime) -> AsyncIterator[StageFactory]:
    stages: list[DeliveryStage] = []

    def make(*notifiers: Notifier, spool_dir: Path | None = None) -> DeliveryStage:
        stage = DeliveryStage(
            notifiers, spool_dir or tmp_path, clock=time.clock, sleep=time.sleep, fsync=False
        )
        stages.append(stage)
        return stage

    yield make
    for stage in stages:
        await stage.stop(drain_timeout=0.1)  # a stuck test notifier never finishes


async def test_alerts_go_out_in_order_and_leave_the_spool(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(clock=time.clock)
    stage = make_stage(notifier)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(20)]
    for alert in alerts:
        await stage.submit("fake", alert)
    lane = stage.lanes["fake"]
    await until(lambda: lane.sent == 20, "all sent")
    assert notifier.delivered_ids() == ids(alerts)
    await until(lambda: lane.queue_depth == 0, "spool empty")
    assert (lane.failed, lane.retried) == (0, 0)


async def test_retry_after_is_honoured(make_stage: StageFactory, time: FakeTime) -> None:
    notifier = ScriptedNotifier(clock=time.clock, script=answers(RetryAfter("429", 42.0)))
    stage = make_stage(notifier)
    await stage.start()
    await stage.submit("fake", numbered_alert(1))
    lane = stage.lanes["fake"]
    await until(lambda: lane.sent == 1, "sent after the retry")
    assert notifier.sent_at[1] - notifier.sent_at[0] >= 42.0
    assert lane.retried == 1
    assert notifier.delivered_ids() == ids([numbered_alert(1)] * 2)  # same id on the retry


async def test_backoff_grows_between_failures(make_stage: StageFactory, time: FakeTime) -> None:
    failures = [RetryAfter("down")] * 4
    notifier = ScriptedNotifier(
        clock=time.clock,
        script=answers(*failures),
        delivery=DeliveryConfig(breaker_failures=100, retry_initial=1.0, retry_max=60.0),
    )
    stage = make_stage(notifier)
    await stage.start()
    await stage.submit("fake", numbered_alert(1))
    await until(lambda: stage.lanes["fake"].sent == 1, "sent")
    gaps = [b - a for a, b in zip(notifier.sent_at, notifier.sent_at[1:], strict=False)]
    assert gaps[0] >= 1.0
    assert gaps[-1] >= 8.0  # 1, 2, 4, 8 (+ jitter)
    assert all(g <= 60.0 + 1.0 for g in gaps)


async def first_rejected_second_sent(stage: DeliveryStage) -> tuple[ReceiverLane, list[EventDict]]:
    """Starts `stage`, submits alerts 1 and 2 to its "fake" receiver and waits until one is
    sent (the first is given up on); the lane, and the "receiver rejected" log entries."""
    await stage.start()
    with capture_logs() as logs:
        await stage.submit("fake", numbered_alert(1))
        await stage.submit("fake", numbered_alert(2))
        lane = stage.lanes["fake"]
        await until(lambda: lane.sent == 1, "the second alert is sent")
    return lane, [e for e in logs if e["event"].startswith("receiver rejected")]


async def test_permanent_failure_is_logged_once_and_dropped(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(
        clock=time.clock, script=answers(PermanentFailure("HTTP 400: invalid_blocks"))
    )
    lane, rejected = await first_rejected_second_sent(make_stage(notifier))
    assert len(rejected) == 1
    assert rejected[0]["reason"] == "HTTP 400: invalid_blocks"
    assert rejected[0]["receiver"] == "fake"
    assert (lane.failed, lane.queue_depth) == (1, 0)
    assert notifier.delivered_ids() == ids([numbered_alert(1), numbered_alert(2)])


async def test_rate_limit_spaces_the_sends(make_stage: StageFactory, time: FakeTime) -> None:
    notifier = ScriptedNotifier(
        clock=time.clock,
        rate_limit=RateLimitConfig(per_minute=20, burst=2),
        delivery=DeliveryConfig(digest_after=None),
    )
    stage = make_stage(notifier)
    await stage.start()
    for i in range(8):
        await stage.submit("fake", numbered_alert(i))
    await until(lambda: stage.lanes["fake"].sent == 8, "all sent")
    times = notifier.sent_at
    assert times[1] - times[0] < 0.01  # the burst
    for a, b in itertools.pairwise(times[1:]):
        assert b - a >= 3.0 - 1e-6  # 20 a minute


async def test_platform_default_limit_applies_without_config(time: FakeTime) -> None:
    from kube_event_watcher.notifiers.delivery import effective_rate
    from kube_event_watcher.notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier

    config = PagerDutyConfig(name="pd", type="pagerduty", routing_key="R0123456789abcdef")
    rate = effective_rate(PagerDutyNotifier(config))
    assert rate is not None
    assert rate.per_minute == 120
    limited = config.model_copy(update={"rate_limit": RateLimitConfig(per_minute=30, burst=1)})
    rate = effective_rate(PagerDutyNotifier(limited))
    assert rate is not None
    assert rate.per_minute == 30


@pytest.mark.parametrize(
    ("platform", "per_minute", "burst"),
    [
        ("dingtalk", 20, 1),
        ("wecom", 20, 1),
        ("feishu", 100, 5),  # 100 a minute and at most 5 within a second
        ("slack", 60, 1),
        ("teams", 60, 1),
        ("telegram", 20, 1),
        ("pagerduty", 120, 10),
        ("email", 30, 1),
    ],
)
def test_every_platform_declares_its_documented_limit(
    platform: str, per_minute: float, burst: int
) -> None:
    from kube_event_watcher.notifiers.registry import BUILTINS

    limit = BUILTINS[platform].default_rate_limit
    assert limit is not None
    assert (limit.per_minute, limit.burst) == (per_minute, burst)


async def test_a_capped_retry_gives_up_after_its_retries(
    make_stage: StageFactory, time: FakeTime
) -> None:
    busy = RetryAfter("WeCom errcode -1: system busy", max_retries=3)
    notifier = ScriptedNotifier(
        clock=time.clock,
        script=answers(*[busy] * 4),
        delivery=DeliveryConfig(breaker_failures=100, digest_after=None),
    )
    lane, dropped = await first_rejected_second_sent(make_stage(notifier))
    # The first send and 3 retries, then dropped; the next alert is not held up by it.
    assert notifier.delivered_ids() == ids([numbered_alert(1)] * 4 + [numbered_alert(2)])
    assert (lane.retried, lane.failed) == (3, 1)
    assert "given up" in dropped[0]["reason"]


async def test_breaker_opens_after_consecutive_failures(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(
        clock=time.clock,
        script=answers(*[RetryAfter("502")] * 3),
        delivery=DeliveryConfig(breaker_failures=3, breaker_cooldown=120.0, retry_initial=0.1),
    )
    stage = make_stage(notifier)
    await stage.start()
    await stage.submit("fake", numbered_alert(1))
    lane = stage.lanes["fake"]
    await until(lambda: lane.sent == 1, "probe delivered")
    # The third failure opened the circuit: the probe waited for the cooldown.
    assert notifier.sent_at[3] - notifier.sent_at[2] >= 120.0
    assert lane.breaker.opened_count == 1
    assert lane.breaker_state == "closed"


async def test_a_receiver_that_falls_behind_gets_one_digest(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(
        clock=time.clock,
        rate_limit=RateLimitConfig(per_minute=1, burst=1),
        delivery=DeliveryConfig(digest_after=30.0, digest_max=50),
    )
    notifier.gate = asyncio.Event()  # hold the first send until all are queued
    stage = make_stage(notifier)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(10)]
    for alert in alerts:
        await stage.submit("fake", alert)
    notifier.gate.set()
    lane = stage.lanes["fake"]
    await until(lambda: lane.sent == 10, "all delivered")
    assert len(notifier.sent) == 2
    digest = notifier.sent[1]
    assert digest.facts["digest_of"] == ids(alerts[1:])
    assert digest.count == 9
    assert "api-9" in digest.note
    assert (lane.digests, lane.digested, lane.queue_depth) == (1, 9, 0)


async def test_no_digest_where_the_notifier_cannot_digest(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = NoDigestNotifier(
        clock=time.clock,
        rate_limit=RateLimitConfig(per_minute=1, burst=1),
        delivery=DeliveryConfig(digest_after=30.0),
    )
    stage = make_stage(notifier)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(4)]
    for alert in alerts:
        await stage.submit("fake", alert)
    await until(lambda: stage.lanes["fake"].sent == 4, "all delivered")
    assert notifier.delivered_ids() == ids(alerts)


async def test_a_stuck_receiver_delays_nobody(make_stage: StageFactory, time: FakeTime) -> None:
    stuck = ScriptedNotifier("stuck", clock=time.clock)
    stuck.gate = asyncio.Event()  # never opens
    healthy = ScriptedNotifier("healthy", clock=time.clock)
    stage = make_stage(stuck, healthy)
    await stage.start()
    for i in range(5):
        await stage.submit("stuck", numbered_alert(i))  # returns: spooled, not sent
        await stage.submit("healthy", numbered_alert(i))
    await until(lambda: stage.lanes["healthy"].sent == 5, "healthy receiver served")
    assert stage.lanes["stuck"].queue_depth == 5
    assert stage.lanes["stuck"].in_flight


async def test_memory_is_bounded_and_the_spool_holds_the_rest(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(clock=time.clock, delivery=DeliveryConfig(queue_size=3))
    notifier.gate = asyncio.Event()
    stage = make_stage(notifier)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(12)]
    for alert in alerts:
        await stage.submit("fake", alert)
    lane = stage.lanes["fake"]
    assert lane.in_memory <= 3
    assert lane.queue_depth == 12
    assert lane.spool_bytes > 0
    notifier.gate.set()
    await until(lambda: lane.sent == 12, "all delivered")
    assert notifier.delivered_ids() == ids(alerts)


async def test_stop_keeps_the_rest_and_a_restart_sends_each_once_in_order(
    make_stage: StageFactory, time: FakeTime, tmp_path: Path
) -> None:
    # A long outage would turn the backlog into a digest; here each alert is checked.
    no_digest = DeliveryConfig(digest_after=None)
    down = ScriptedNotifier(
        clock=time.clock, script=lambda a: RetryAfter("503"), delivery=no_digest
    )
    stage = make_stage(down)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(6)]
    for alert in alerts:
        await stage.submit("fake", alert)
    await until(lambda: stage.lanes["fake"].retried >= 3, "retrying")
    await stage.stop(drain_timeout=1.0)

    up = ScriptedNotifier(clock=time.clock, delivery=no_digest)
    again = make_stage(up)
    await again.start()
    await until(lambda: again.lanes["fake"].sent == 6, "replayed")
    assert up.delivered_ids() == ids(alerts)


async def test_stop_lets_the_send_in_flight_finish(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(clock=time.clock)
    notifier.gate = asyncio.Event()
    stage = make_stage(notifier)
    await stage.start()
    await stage.submit("fake", numbered_alert(1))
    await stage.submit("fake", numbered_alert(2))
    lane = stage.lanes["fake"]
    await until(lambda: lane.in_flight, "sending")
    stopping = asyncio.create_task(stage.stop(drain_timeout=5.0))
    await asyncio.sleep(0)
    notifier.gate.set()
    await stopping
    assert lane.sent == 1  # the in-flight one finished, the next one stays spooled
    assert lane.queue_depth == 1


async def test_unknown_receiver_is_named(make_stage: StageFactory) -> None:
    stage = make_stage(ScriptedNotifier())
    await stage.start()
    with pytest.raises(KeyError, match="no receiver named 'nope' \\(known: fake\\)"):
        await stage.submit("nope", numbered_alert(1))


# -- the commit gate: alerts go out once a durable checkpoint covers their emit mark ---------


async def test_alerts_wait_for_the_checkpoint_that_covers_them(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(clock=time.clock)
    stage = make_stage(notifier)
    await stage.start(gated=True)
    assert await stage.resume(0) == 0
    alerts = [numbered_alert(i) for i in range(6)]
    await stage.submit_many("fake", alerts, [1, 2, 3, 4, 5, 6])
    self_alert = numbered_alert(99)
    await stage.submit("fake", self_alert)  # no mark: not from the event stream
    lane = stage.lanes["fake"]
    await until(lambda: lane.queue_depth == 7, "all spooled")
    stage.release(4)
    await until(lambda: lane.sent == 4, "the covered ones sent")
    assert notifier.delivered_ids() == ids(alerts[:4])
    stage.release(6)
    await until(lambda: lane.sent == 7, "the rest sent, in spool order")
    assert notifier.delivered_ids() == ids([*alerts, self_alert])


async def test_held_alerts_are_flushed_without_a_wait_and_never_sent_before(
    tmp_path: Path, time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alerts that wait for a checkpoint are written at once and flushed in the lane's
    thread with nobody waiting; the checkpoint's own job (`sync_jobs`) finds nothing left to
    do. When that flush fails (a full disk), the lane rewrites the spool before it sends:
    nothing goes out that a machine crash could lose."""
    failing = [False]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if failing[0]:
            failing[0] = False
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    notifier = ScriptedNotifier(clock=time.clock)
    stage = DeliveryStage([notifier], tmp_path, clock=time.clock, sleep=time.sleep)
    await stage.start(gated=True)
    await stage.resume(0)
    lane = stage.lanes["fake"]
    try:
        alerts = [numbered_alert(i) for i in range(4)]
        await stage.submit_many("fake", alerts[:2], [1, 2])
        await until(lambda: lane.spool.synced_seq == 2, "flushed in the lane's thread")
        assert await stage.sync_jobs() is None, "nothing left for the checkpoint to flush"
        stage.release(2)
        await until(lambda: lane.sent == 2, "the covered ones sent")
        failing[0] = True
        await stage.submit_many("fake", alerts[2:], [3, 4])
        await until(lambda: lane.spool.rewrite_due, "the lane's flush failed")
        assert lane.spool.synced_seq == 2
        stage.release(4)  # the lane rewrites the spool (durable), then sends
        await until(lambda: lane.sent == 4, "sent after the rewrite")
        assert not lane.spool.rewrite_due and lane.spool.synced_seq == 4
        assert notifier.delivered_ids() == ids(alerts)
    finally:
        await stage.stop(drain_timeout=0.1)


async def test_a_restart_voids_what_no_checkpoint_covers(
    make_stage: StageFactory, time: FakeTime, tmp_path: Path
) -> None:
    first = make_stage(ScriptedNotifier(clock=time.clock), spool_dir=tmp_path / "s")
    await first.start(gated=True)
    await first.resume(9)
    covered, uncovered = numbered_alert(1), [numbered_alert(2), numbered_alert(3)]
    await first.submit_many("fake", [covered, *uncovered], [10, 11, 12])
    await first.stop(drain_timeout=0.1)  # as a crash: 10 was not sent yet, 11-12 never
    notifier = ScriptedNotifier(clock=time.clock)
    second = make_stage(notifier, spool_dir=tmp_path / "s")
    await second.start(gated=True)
    with capture_logs() as logs:
        await second.resume(10)  # the checkpoint on disk reaches mark 10
    lane = second.lanes["fake"]
    await until(lambda: lane.sent == 1, "the covered alert sent")
    assert notifier.delivered_ids() == ids([covered])
    assert lane.queue_depth == 0, "the uncovered ones are gone: the stream yields them again"
    assert any(e.get("alerts") == 2 and "dropped" in e["event"] for e in logs)
    await second.stop(drain_timeout=0.1)
    third = make_stage(ScriptedNotifier(clock=time.clock), spool_dir=tmp_path / "s")
    await third.start(gated=True)
    await third.resume(12)  # a later checkpoint's marks reach past the voided ones
    assert third.lanes["fake"].queue_depth == 0, "a voided alert never comes back"


async def test_without_a_checkpoint_what_the_spool_holds_goes_out(
    make_stage: StageFactory, time: FakeTime, tmp_path: Path
) -> None:
    first = make_stage(ScriptedNotifier(clock=time.clock), spool_dir=tmp_path / "s")
    await first.start(gated=True)
    await first.resume(0)
    alerts = [numbered_alert(1), numbered_alert(2)]
    await first.submit_many("fake", alerts, [1, 2])
    await first.stop(drain_timeout=0.1)
    # The state did not survive (the memory backend): nothing will yield these again.
    notifier = ScriptedNotifier(clock=time.clock)
    second = make_stage(notifier, spool_dir=tmp_path / "s")
    await second.start(gated=True)
    assert await second.resume(None) == 2, "marks go on above the spooled ones"
    await until(lambda: second.lanes["fake"].sent == 2, "both sent")
    assert notifier.delivered_ids() == ids(alerts)


async def test_a_digest_takes_only_what_a_checkpoint_covers(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = ScriptedNotifier(
        clock=time.clock,
        script=answers(RetryAfter("down", 600.0)),
        delivery=DeliveryConfig(digest_after=60.0, digest_max=50),
    )
    stage = make_stage(notifier)
    await stage.start(gated=True)
    await stage.resume(0)
    alerts = [numbered_alert(i) for i in range(5)]
    await stage.submit_many("fake", alerts, [1, 2, 3, 4, 5])
    stage.release(3)
    lane = stage.lanes["fake"]
    # The retry waits 600 s of fake time: past digest_after, so the retry is a digest.
    await until(lambda: lane.sent == 3, "a digest of the covered three")
    assert lane.digests == 1 and lane.queue_depth == 2


# -- batches: several alerts a request where the platform takes a list ----------------------


async def test_alerts_ready_together_share_a_request(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = BatchingNotifier(4, clock=time.clock)
    notifier.gate = asyncio.Event()  # the first request waits: the rest queue up behind it
    stage = make_stage(notifier)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(10)]
    await stage.submit("fake", alerts[0])
    await until(lambda: len(notifier.requests) == 1, "the first request in flight")
    await stage.submit_many("fake", alerts[1:])
    notifier.gate.set()
    lane = stage.lanes["fake"]
    await until(lambda: lane.sent == 10, "all sent")
    assert notifier.requests == [
        ids(alerts[:1]),
        ids(alerts[1:5]),
        ids(alerts[5:9]),
        ids(alerts[9:]),
    ]
    await until(lambda: lane.queue_depth == 0, "all acknowledged in the spool")


async def test_a_batch_takes_only_what_a_checkpoint_covers(
    make_stage: StageFactory, time: FakeTime
) -> None:
    notifier = BatchingNotifier(50, clock=time.clock)
    stage = make_stage(notifier)
    await stage.start(gated=True)
    await stage.resume(0)
    alerts = [numbered_alert(i) for i in range(6)]
    await stage.submit_many("fake", alerts, [1, 2, 3, 4, 5, 6])
    lane = stage.lanes["fake"]
    stage.release(4)
    await until(lambda: lane.sent == 4, "the covered ones")
    assert notifier.requests == [ids(alerts[:4])]
    stage.release(6)
    await until(lambda: lane.sent == 6, "the rest")
    assert notifier.requests[1:] == [ids(alerts[4:])]


async def test_a_refused_batch_is_split_and_only_the_bad_alert_dropped(
    make_stage: StageFactory, time: FakeTime
) -> None:
    bad = numbered_alert(2)
    notifier = BatchingNotifier(
        10, clock=time.clock, refuses=lambda a: a.notification_id == bad.notification_id
    )
    stage = make_stage(notifier)
    await stage.start()
    alerts = [numbered_alert(i) for i in range(6)]
    with capture_logs() as logs:
        await stage.submit_many("fake", alerts)
        lane = stage.lanes["fake"]
        await until(lambda: lane.sent + lane.failed == 6, "all settled")
    assert (lane.sent, lane.failed) == (5, 1)
    assert notifier.delivered_ids() == [i for i in ids(alerts) if i != bad.notification_id]
    assert notifier.requests[0] == ids(alerts), "first as one request"
    assert notifier.requests[1:] == [[a] for a in ids(alerts)], "then one by one"
    dropped = [e for e in logs if e["event"] == "receiver rejected the alert; dropped"]
    assert [e["alert"] for e in dropped] == [bad.notification_id]
    # Past the refused batch, requests carry several alerts again.
    more = [numbered_alert(i) for i in range(10, 13)]
    await stage.submit_many("fake", more)
    await until(lambda: lane.sent == 8, "the next ones")
    assert notifier.requests[-1] == ids(more)


async def test_acks_written_in_the_loop_keep_a_restart_from_resending(
    make_stage: StageFactory, time: FakeTime, tmp_path: Path
) -> None:
    first_notifier = BatchingNotifier(3, clock=time.clock)
    first = make_stage(first_notifier, spool_dir=tmp_path / "s")
    await first.start()
    alerts = [numbered_alert(i) for i in range(7)]
    await first.submit_many("fake", alerts)
    await until(lambda: first.lanes["fake"].sent == 7, "all sent")
    await first.stop(drain_timeout=0.1)
    again = BatchingNotifier(3, clock=time.clock)
    second = make_stage(again, spool_dir=tmp_path / "s")
    await second.start()
    assert second.lanes["fake"].queue_depth == 0, "every ack reached the spool file"
    assert again.requests == []


async def test_a_receiver_added_while_running_sends_what_the_checkpoint_covers(
    make_stage: StageFactory, time: FakeTime
) -> None:
    """A config reload adds a receiver: its lane starts at once, gated as the others, and
    lets out what the checkpoints released so far, the rest when the next one covers it."""
    stage = make_stage(ScriptedNotifier(clock=time.clock))
    await stage.start(gated=True)
    await stage.resume(0)
    stage.release(2)
    added = ScriptedNotifier(name="added", clock=time.clock)
    lane = await stage.add(added)
    alerts = [numbered_alert(i) for i in range(3)]
    await stage.submit_many("added", alerts, [1, 2, 3])
    await until(lambda: lane.sent == 2, "the released ones sent")
    assert lane.queue_depth == 1, "mark 3 waits for its checkpoint"
    stage.release(3)
    await until(lambda: lane.sent == 3, "the last one sent")
    assert added.delivered_ids() == ids(alerts)
    with pytest.raises(ValueError, match="'added' has a lane already"):
        await stage.add(ScriptedNotifier(name="added"))
