"""The notify stage: one lane per receiver, each with its own spool, queue, rate limit,
retries and circuit breaker, so a slow or dead receiver never delays the others.

    submit(receiver, alert) ──► spool (append + fsync) ──► bounded memory queue ──► worker
                                                                                     │
          ack in the spool ◄── Delivered / PermanentFailure ◄── notifier.send ◄──────┘
                                      RetryAfter ──► backoff (tenacity), breaker, retry

`submit` returns once the alert is durably spooled: from then on a crash loses nothing, so
the caller may checkpoint. Under the daemon, spooled alerts carry the pipeline's emit mark
and a lane sends only those a durable checkpoint covers (`release`); on start, the alerts
above the last checkpoint's mark are voided, since the event stream yields them again from
that checkpoint (`start(gated=True)`, then `resume`). What was sent and what the checkpoint says is
seen can then never disagree, whatever instant a crash picks.

In a gated lane an alert with a mark waits for a checkpoint anyway, so `submit` writes it in
the event loop and returns at once: its fsync is handed to the lane's thread with nobody
waiting for it (no trip back to the event loop). The checkpoint that covers it must not be
durable first: the daemon takes `sync_jobs` and runs them in its store's thread just before
the checkpoint's own write (a no-op when the lane's flush got there first). Whatever the
path, a lane sends an alert only once its spool line is durable (`Spool.synced_seq`); if
nobody made it so, the lane flushes (or, after a failed fsync, rewrites) before it sends.

Each worker sends its receiver's alerts in order: one a request, or, where the platform takes
a list (`Notifier.batch_size`), every sendable alert queued at that moment in one request.
When a receiver falls behind (the oldest queued alert waited `digest_after`), the queued
alerts are combined into one digest, unless the notifier says it cannot digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from kube_event_watcher.backoff import Backoff
from kube_event_watcher.clock import Clock, SystemClock
from kube_event_watcher.config.delivery import DeliveryConfig, RateLimitConfig
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.breaker import CircuitBreaker
from kube_event_watcher.notifiers.digest import digest_alert
from kube_event_watcher.notifiers.ratelimit import Rate, TokenBucket
from kube_event_watcher.notifiers.spool import Spool, SpoolEntry, spool_file_name
from kube_event_watcher.ops.metrics import Histogram
from kube_event_watcher.pipeline.model import Alert
from kube_event_watcher.state.iothread import IoThread

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def effective_rate(notifier: Notifier) -> Rate | None:
    """The receiver's configured rate limit, else its platform's documented one, else none."""
    configured = getattr(notifier.config, "rate_limit", None)
    chosen: RateLimitConfig | None = configured or type(notifier).default_rate_limit
    if chosen is None:
        return None
    return Rate(per_minute=chosen.per_minute, burst=chosen.burst)


def delivery_settings(notifier: Notifier) -> DeliveryConfig:
    settings = getattr(notifier.config, "delivery", None)
    return settings if isinstance(settings, DeliveryConfig) else DeliveryConfig()


class _SpoolHold:
    """`async with`: hold a lane's spool for an operation in its I/O thread; the acks that
    waited for it are written as it ends. (A class: `asynccontextmanager` costs an async
    generator per use, and this runs for every spooled batch.)"""

    __slots__ = ("_lane",)

    def __init__(self, lane: ReceiverLane) -> None:
        self._lane = lane

    async def __aenter__(self) -> None:
        await self._lane._lock.acquire()
        self._lane._write_acks()

    async def __aexit__(self, *_: object) -> None:
        try:
            self._lane._write_acks()
        finally:
            self._lane._lock.release()


class ReceiverLane:
    """One receiver's spool, memory queue, worker and counters.

    The counters are plain attributes for the metrics endpoint: `sent`, `failed`, `retried`
    (attempts that got RetryAfter), `digests` (digest messages sent) and `digested` (alerts
    folded into them), `latency` (spooled → accepted, per alert); `queue_depth`,
    `oldest_age`, `in_memory` and `spool_bytes` are read live.
    """

    def __init__(
        self,
        notifier: Notifier,
        spool: Spool,
        settings: DeliveryConfig,
        rate: Rate | None,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.notifier = notifier
        self.name = notifier.name
        self.spool = spool
        self.settings = settings
        self.clock = clock
        self._sleep = sleep
        self.bucket = TokenBucket(rate, clock.monotonic()) if rate is not None else None
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown)
        self._backoff = Backoff(settings.retry_initial, settings.retry_max, settings.retry_initial)
        self.memory: deque[SpoolEntry] = deque()
        self._loaded_upto = 0  # highest spool seq copied into memory
        self._lock = asyncio.Lock()  # one spool file operation at a time
        self._io = IoThread(f"spool:{self.name}")
        self._spool_hold = _SpoolHold(self)
        self.batch_size = notifier.batch_size
        self._done: list[int] = []  # delivered, the ack not yet handed to the spool
        # Sent one at a time up to this seq: a batch the platform refused is split so that
        # only the alert it refuses is dropped.
        self._single_through = 0
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._acked = asyncio.Condition()
        self._not_before = 0.0  # monotonic time before which no retry goes out
        self.in_flight = False
        # Entries with a mark above this wait for the checkpoint that covers them.
        self.released: float = math.inf
        self.gated = False
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.digests = 0
        self.digested = 0
        self.latency = Histogram()
        self.log = log.bind(receiver=self.name)

    # -- counters ---------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Alerts not yet delivered (in memory, in flight, or only in the spool)."""
        return len(self.spool)

    @property
    def oldest_age(self) -> float:
        """Seconds the oldest undelivered alert has waited (memory holds the spool's head
        whenever anything waits: the worker refills it before it sleeps)."""
        if not self.memory:
            return 0.0
        return max(0.0, self.clock.now() - self.memory[0].queued_at)

    @property
    def in_memory(self) -> int:
        return len(self.memory)

    @property
    def spool_bytes(self) -> int:
        return self.spool.size_bytes

    @property
    def breaker_state(self) -> str:
        return self.breaker.state(self.clock.monotonic())

    # -- feeding ----------------------------------------------------------------------------

    async def open(self, gated: bool = False) -> None:
        """Read the spool back. `gated`: hold alerts that carry a mark until `release`."""
        async with self._spool_hold:
            await self._io.run(self.spool.open)
        if gated:
            self.released = 0
            self.gated = True
        if len(self.spool):
            self.log.info("replaying spooled alerts", pending=len(self.spool))
        if self.spool.torn_lines:
            self.log.warning("spool had a torn last line (crash mid-write); it was cut off")

    async def submit(self, alerts: list[Alert], marks: list[int] | None = None) -> None:
        """Spool `alerts`. Durable on return, except alerts that all carry a mark in a gated
        lane: they wait for a checkpoint, which makes them durable first (`sync_job`)."""
        held = self.gated and bool(marks) and all(marks or ())
        async with self._spool_hold:
            if held:
                entries = self.spool.append_many(alerts, self.clock.now(), marks, sync=False)
                # Flushed at once in the lane's thread, nobody waiting: usually done before
                # the checkpoint gets to it (its fsync then overlaps the previous commit's).
                if (flush := self.spool.sync_job()) is not None:
                    self._io.post(flush)
            else:
                entries = await self._io.run(
                    self.spool.append_many, alerts, self.clock.now(), marks
                )
            for entry in entries:
                # Straight into memory only when nothing older waits on disk (keeps order).
                if (
                    len(self.memory) < self.settings.queue_size
                    and self._loaded_upto == entry.seq - 1
                ):
                    self.memory.append(entry)
                    self._loaded_upto = entry.seq
        if not held:  # held ones wait for `release`, which wakes the worker
            self._wakeup.set()

    async def _refill(self) -> None:
        room = self.settings.queue_size - len(self.memory)
        if room <= 0 or self.spool.last_seq <= self._loaded_upto:
            return
        async with self._spool_hold:
            entries = await self._io.run(self.spool.read_after, self._loaded_upto, room)
        for entry in entries:
            self.memory.append(entry)
            self._loaded_upto = entry.seq
        if not entries:
            self._loaded_upto = self.spool.last_seq

    async def _ack(self, entries: list[SpoolEntry]) -> None:
        """Mark `entries` (the head of the queue) done. The ack line is written right here in
        the event loop: a short write to the page cache, never fsynced (see `Spool.ack`),
        cheaper than a trip to a worker thread per delivered request. While a spool
        operation runs in a thread the acks wait and go with the next write."""
        for _ in entries:
            self.memory.popleft()
        self._done.extend(e.seq for e in entries)
        if not self._lock.locked():
            self._write_acks()
        if self.spool.compact_due:
            async with self._spool_hold:
                if self.spool.compact_due:  # another lock holder may have compacted
                    await self._io.run(self.spool.compact)
        async with self._acked:
            self._acked.notify_all()

    def _write_acks(self) -> None:
        """Hand the waiting acks to the spool (call with no spool operation in a thread)."""
        if not self._done:
            return
        done, self._done = self._done, []
        try:
            self.spool.ack(done)
        except OSError as exc:
            # Done all the same (the spool knows it); the ack line goes with a later
            # one. Until then a crash would re-send these, with their same ids.
            self.log.error(
                "cannot record delivered alerts in the spool; going on",
                error=str(exc),
                spool=str(self.spool.path),
            )

    async def void_after(self, committed: int) -> None:
        """Drop the alerts above the last checkpoint's mark: the stream yields them again."""
        async with self._spool_hold:
            voided = await self._io.run(self.spool.void_after, committed)
        self.memory = deque(e for e in self.memory if e.mark <= committed)
        if voided:
            self.log.info(
                "alerts spooled after the last checkpoint are dropped; the event stream "
                "yields them again from it",
                alerts=voided,
                checkpoint_mark=committed,
            )

    def release(self, mark: int) -> None:
        """A checkpoint covering every alert up to `mark` is durable: they may go out."""
        if mark > self.released:
            self.released = mark
            self._wakeup.set()

    def _sendable(self, entry: SpoolEntry) -> bool:
        return entry.mark <= self.released and entry.seq <= self.spool.synced_seq

    async def sync_job(self) -> Callable[[], None] | None:
        """A blocking call that makes every alert spooled so far durable, for the daemon's
        commit to run before its checkpoint's write (None: nothing to do). A spool whose
        last fsync failed is rewritten here first, in the lane's own thread."""
        spool = self.spool
        if spool.synced_seq >= spool.last_seq and not spool.rewrite_due:
            return None
        async with self._spool_hold:  # no file operation in a thread swaps the file meanwhile
            if spool.rewrite_due:
                await self._io.run(spool.compact)
            return spool.sync_job()

    async def _make_durable(self) -> None:
        """Fsync what was spooled without (nobody else did before the lane got to it)."""
        job = await self.sync_job()
        if job is not None:
            await self._io.run(job)  # on a duplicate descriptor: no lock needed

    async def wait_done_through(self, seq: int) -> None:
        """Wait until no alert numbered `seq` or lower is left (delivered or dropped)."""

        def done() -> bool:
            first = self.spool.first_pending()
            return first is None or first > seq

        async with self._acked:
            await self._acked.wait_for(done)

    # -- the worker -------------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping.is_set():
            if not self.memory or not self._sendable(self.memory[0]):
                self._wakeup.clear()
                await self._refill()
                head = self.memory[0] if self.memory else None
                if head and head.mark <= self.released and head.seq > self.spool.synced_seq:
                    try:
                        await self._make_durable()  # released, but not fsynced yet
                    except OSError as exc:
                        self.log.error(
                            "cannot flush the spool; retrying", error=str(exc), retry_in=1.0
                        )
                        await self._wait_for(self._sleep(1.0))
                if not self.memory or not self._sendable(self.memory[0]):
                    await self._wakeup.wait()  # new alerts, a release, or stop
                    continue
            await self._deliver_head()

    async def _wait_for(self, waiter: Awaitable[Any]) -> None:
        """Wait for `waiter`, or until stop is asked for, whichever comes first."""
        task = asyncio.ensure_future(waiter)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stop):
                if not pending.done():
                    pending.cancel()
            await asyncio.gather(task, stop, return_exceptions=True)

    def _hold_off(self, now: float) -> float:
        waits = [self.breaker.wait(now), self._not_before - now]
        if self.bucket is not None:
            waits.append(self.bucket.wait(now))
        return max(waits)

    async def _batch(self) -> tuple[list[SpoolEntry], bool]:
        """What the next request carries, and whether it is a digest: the head alert; or,
        when behind, as many queued alerts as a digest may hold; or, for a platform that
        takes several alerts a request, the sendable ones queued now (up to its batch size)."""
        head = self.memory[0]
        after = self.settings.digest_after
        if (
            after is not None
            and type(self.notifier).can_digest
            and self.clock.now() - head.queued_at >= after
        ):
            await self._refill()
            batch = list(itertools.islice(self.memory, self.settings.digest_max))
            # Only firing alerts are combined; a resolve is its own message; and only what a
            # checkpoint covers.
            cut = next(
                (
                    i
                    for i, e in enumerate(batch)
                    if e.alert.status != "firing" or not self._sendable(e)
                ),
                len(batch),
            )
            return batch[: max(cut, 1)], cut > 1
        size = self.batch_size
        if size <= 1 or head.seq <= self._single_through:
            return [head], False
        batch = []
        for entry in self.memory:
            if len(batch) >= size or not self._sendable(entry):
                break
            batch.append(entry)
        return batch, False

    async def _deliver_head(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            hold = self._hold_off(self.clock.monotonic())
            if hold > 0:
                await self._wait_for(self._sleep(hold))
                continue
            batch, digest = await self._batch()
            alerts = [e.alert for e in batch]
            if digest:
                alerts = [digest_alert(self.name, alerts)]
            label = alerts[0].notification_id
            if self.bucket is not None:
                self.bucket.take(self.clock.monotonic())
            self.in_flight = True
            try:
                result = await self._send(self.notifier.send_many(alerts))
            finally:
                self.in_flight = False
            now = self.clock.monotonic()
            if isinstance(result, Delivered):
                self.breaker.record_success()
                # Acked first: a counter that says "sent" never runs ahead of the spool.
                await self._ack(batch)
                self.sent += len(batch)
                accepted = self.clock.now()
                for entry in batch:
                    self.latency.observe(accepted - entry.queued_at)
                if digest:
                    self.digests += 1
                    self.digested += len(batch)
                    self.log.info("digest delivered", alerts=len(batch), alert=label)
                return
            if (
                isinstance(result, RetryAfter)
                and result.max_retries is not None
                and attempt >= result.max_retries
            ):
                result = PermanentFailure(
                    f"{result.reason} (still failing after {attempt} retries; given up)"
                )
            if isinstance(result, PermanentFailure):
                # The platform answered, so it is up: this alert is the problem. Report, drop.
                self.breaker.record_success()
                if len(batch) > 1 and not digest:
                    # Which alert of the batch it refuses is unknown: send them one by one.
                    self._single_through = batch[-1].seq
                    self.log.warning(
                        "receiver rejected a batch; sending its alerts one at a time",
                        reason=redact(result.reason),
                        alerts=len(batch),
                    )
                    return
                await self._ack(batch)
                self.failed += len(batch)
                self.log.error(
                    "receiver rejected the alert; dropped",
                    reason=redact(result.reason),
                    alert=label,
                    alerts=len(batch),
                )
                return
            attempt += 1
            self.retried += 1
            self.breaker.record_failure(now)
            delay = self._backoff.delay(attempt)
            if result.seconds is not None:
                delay = max(delay, result.seconds)
                if self.bucket is not None:
                    self.bucket.drain(now)  # the platform's count is ahead of ours
            self._not_before = now + delay
            self.log.warning(
                "receiver asked to retry",
                reason=redact(result.reason),
                attempt=attempt,
                retry_in=round(delay, 3),
                breaker=self.breaker.state(now),
            )

    async def _send(self, sending: Awaitable[DeliveryResult]) -> DeliveryResult:
        try:
            async with asyncio.timeout(self.settings.send_timeout):
                return await sending
        except TimeoutError:
            return RetryAfter(f"no answer within {self.settings.send_timeout:g}s")
        except Exception as exc:  # a notifier bug must not stop the lane
            self.log.exception("notifier raised; will retry", error=redact(str(exc)))
            return RetryAfter(f"{type(exc).__name__}: {exc}")

    # -- stopping ---------------------------------------------------------------------------

    def close_spool(self) -> None:
        """After the worker ended: no spool operation is left in flight."""
        self._io.close()
        with contextlib.suppress(OSError):
            self.spool.close()

    def ask_to_stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()


class DeliveryStage:
    """Every receiver's lane. `start`, then `submit` per (receiver, alert), then `stop`."""

    def __init__(
        self,
        notifiers: Iterable[Notifier],
        spool_dir: str | Path,
        *,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        compact_after: int = 1000,
        fsync: bool = True,
    ) -> None:
        self.clock = clock or SystemClock()
        self.spool_dir = Path(spool_dir).expanduser()
        self._sleep = sleep
        self._compact_after = compact_after
        self._fsync = fsync
        self.lanes: dict[str, ReceiverLane] = {}
        for notifier in notifiers:
            self.lanes[notifier.name] = self._lane(notifier)
        self._started = False
        self._lifecycle = asyncio.Lock()  # start, stop and add one at a time
        self._gated = False
        self._released = 0  # the highest mark `release` let out
        self._resumed: int | None = None  # the checkpoint mark `resume` voided above

    def _lane(self, notifier: Notifier) -> ReceiverLane:
        notifier.state_dir = self.spool_dir
        spool = Spool(
            self.spool_dir / spool_file_name(notifier.name), self._compact_after, fsync=self._fsync
        )
        return ReceiverLane(
            notifier,
            spool,
            delivery_settings(notifier),
            effective_rate(notifier),
            self.clock,
            self._sleep,
        )

    async def add(self, notifier: Notifier, *, discard_spool: bool = False) -> ReceiverLane:
        """A receiver added while running (a config reload): its lane, started as `start`
        and `resume` started the others when the stage runs already, and released as far
        as they are. `discard_spool`: drop what an earlier run left in its spool file (HA,
        where the spool is emptied when a replica takes the lead)."""
        if notifier.name in self.lanes:
            raise ValueError(f"receiver {notifier.name!r} has a lane already")
        lane = self._lane(notifier)
        if discard_spool:
            lane.spool.path.unlink(missing_ok=True)
        async with self._lifecycle:
            if self._started:
                await notifier.start()
                await lane.open(self._gated)
                if self._resumed is not None:
                    await lane.void_after(self._resumed)
                if self._gated:
                    lane.release(self._released)
                lane.task = asyncio.create_task(lane.run(), name=f"deliver:{lane.name}")
            self.lanes[notifier.name] = lane
        return lane

    @classmethod
    def from_receivers(
        cls,
        receivers: Mapping[str, Any],
        types: Mapping[str, type[Notifier]],
        spool_dir: str | Path,
        **kwargs: Any,
    ) -> DeliveryStage:
        """Build a notifier per validated receiver config (`LoadedConfig.receivers`)."""
        notifiers = [
            types[cfg.type](cfg) for cfg in receivers.values() if isinstance(cfg, ReceiverConfig)
        ]
        return cls(notifiers, spool_dir, **kwargs)

    async def start(self, gated: bool = False) -> None:
        """Start every notifier, replay every spool, start every worker. `gated`: alerts
        with an emit mark wait until `release` covers them (call `resume` first)."""
        async with self._lifecycle:
            for lane in self.lanes.values():
                await lane.notifier.start()
                await lane.open(gated)
            for lane in self.lanes.values():
                lane.task = asyncio.create_task(lane.run(), name=f"deliver:{lane.name}")
            self._started = True
            self._gated = gated

    async def submit(self, receiver: str, alert: Alert) -> None:
        """Spool `alert` for `receiver`; returns once it is on disk (never waits for sending)."""
        await self.submit_many(receiver, [alert])

    async def submit_many(
        self, receiver: str, alerts: list[Alert], marks: list[int] | None = None
    ) -> None:
        """Spool `alerts` for `receiver` in this order, with one disk flush for all; `marks`
        are their emit marks (see `release`)."""
        lane = self.lanes.get(receiver)
        if lane is None:
            known = ", ".join(sorted(self.lanes)) or "none"
            raise KeyError(f"no receiver named {receiver!r} (known: {known})")
        if alerts:
            await lane.submit(alerts, marks)

    async def resume(self, committed: int | None) -> int:
        """After `start(gated=True)`: void what the last checkpoint (its mark `committed`)
        does not cover, release what it does, and return the mark to go on from. Without a
        checkpoint (`None`: a first start, or a state that did not survive, as with the
        memory backend) nothing will re-derive what the spools hold: it all goes out."""
        if committed is None:
            committed = max((lane.spool.highest_mark for lane in self.lanes.values()), default=0)
        else:
            self._resumed = committed
            for lane in list(self.lanes.values()):  # one added meanwhile voids its own
                await lane.void_after(committed)
        self.release(committed)
        return committed

    async def sync_jobs(self) -> Callable[[], None] | None:
        """One blocking call that makes every lane's spooled alerts durable (None: they
        are): a checkpoint covering them must run it before its own write."""
        jobs = [job for lane in self.lanes.values() if (job := await lane.sync_job()) is not None]
        if not jobs:
            return None
        if len(jobs) == 1:
            return jobs[0]

        def run_all() -> None:
            for job in jobs:
                job()

        return run_all

    def release(self, mark: int) -> None:
        """Every lane may send its alerts with an emit mark up to `mark`."""
        self._released = max(self._released, mark)
        for lane in self.lanes.values():
            lane.release(mark)

    def watermarks(self) -> dict[str, int]:
        """The last spooled alert's number in each lane (see `done_through`)."""
        return {name: lane.spool.last_seq for name, lane in self.lanes.items()}

    async def done_through(self, marks: Mapping[str, int]) -> None:
        """Wait until every lane has delivered (or dropped) its alerts up to its mark."""
        await asyncio.gather(*(self.lanes[name].wait_done_through(m) for name, m in marks.items()))

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Let in-flight sends finish (up to `drain_timeout` seconds), keep the rest spooled."""
        async with self._lifecycle:
            lanes = list(self.lanes.values())
            for lane in lanes:
                lane.ask_to_stop()
            tasks = [lane.task for lane in lanes if lane.task is not None]
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=drain_timeout)
                for task in late:
                    task.cancel()  # its alert stays in the spool and goes out after a restart
                await asyncio.gather(*tasks, return_exceptions=True)
                for lane in lanes:
                    if (
                        lane.task is not None
                        and not lane.task.cancelled()
                        and lane.task.exception()
                    ):
                        lane.log.error("delivery worker failed", error=str(lane.task.exception()))
            for lane in lanes:
                lane.close_spool()
                try:
                    await lane.notifier.close()
                except Exception as exc:
                    lane.log.error("notifier close failed", error=redact(str(exc)))
            self._started = False

    def stats(self) -> dict[str, dict[str, float | str]]:
        """Counters per receiver, for metrics and the readiness check."""
        return {
            name: {
                "queue_depth": lane.queue_depth,
                "in_memory": lane.in_memory,
                "spool_bytes": lane.spool_bytes,
                "sent": lane.sent,
                "failed": lane.failed,
                "retried": lane.retried,
                "digests": lane.digests,
                "digested": lane.digested,
                "breaker": lane.breaker_state,
            }
            for name, lane in self.lanes.items()
        }
