"""The assembly: builds every stage from the config and runs them. The only place that wires
stages together; each stage knows only its own input and output."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog
from pydantic import BaseModel

from kube_event_watcher import __version__
from kube_event_watcher.clock import Clock, SystemClock
from kube_event_watcher.config.loading import LoadedConfig
from kube_event_watcher.config.schema import ClusterConfig, Config, SourceConfig
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.fleet.readers import stream_reader
from kube_event_watcher.fleet.runner import FleetRunner, StreamReader
from kube_event_watcher.kube.client import ApiEndpoint, own_namespace, resolve_endpoint
from kube_event_watcher.kube.configmap_store import ConfigMapStore, StateTooLarge
from kube_event_watcher.kube.errors import ApiError
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.lease import (
    LeaderElector,
    LeadershipLost,
    LeaseTimings,
    default_identity,
)
from kube_event_watcher.kube.lookups import enrichment_lookups
from kube_event_watcher.kube.objects import (
    NODES,
    PODS,
    ClusterObjects,
    Interner,
    ObjectStore,
    node_from_wire,
    pod_from_wire,
)
from kube_event_watcher.kube.watching import ListWatch, Sleep, WatchScope, WatchSettings
from kube_event_watcher.kube.wire import DecodeError
from kube_event_watcher.notifiers.base import Notifier, ReceiverConfig
from kube_event_watcher.notifiers.delivery import DeliveryStage, ReceiverLane
from kube_event_watcher.notifiers.registry import build_notifier, notifier_types
from kube_event_watcher.ops.health import StaleWatchMonitor, WatchStatus, run_self_alert_loop
from kube_event_watcher.ops.logging import alert_fields, configure_logging
from kube_event_watcher.ops.metrics import Metrics, build_labels, hot_path_compiled
from kube_event_watcher.ops.reload import ReloadOutcome
from kube_event_watcher.ops.server import OpsServer
from kube_event_watcher.pipeline.aggregate import Aggregator
from kube_event_watcher.pipeline.detect import Detector
from kube_event_watcher.pipeline.enrich import Enricher
from kube_event_watcher.pipeline.filtering import EventFilter
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import Alert, Occurrence, RawEvent
from kube_event_watcher.pipeline.normalize import MalformedEvent, Normalizer, parse_time
from kube_event_watcher.pipeline.route import RoutingStage
from kube_event_watcher.state.base import StateStore
from kube_event_watcher.state.file import FileStore
from kube_event_watcher.state.memory import MemoryStore

log = structlog.get_logger(__name__)

CHECKPOINT_VERSION = 1
# Sends in flight at SIGTERM get this long to finish; the rest stay spooled (well inside a
# pod's default 30 s grace period, leaving time to flush the checkpoint).
DRAIN_TIMEOUT = 10.0
IMPLICIT_CLUSTER = "default"

Intake = Callable[[Occurrence], Awaitable[None]]
AGGREGATION_DOCUMENT = "aggregation"
# The emit mark a commit reaches: spooled alerts above it on start are re-derived, not sent.
COMMIT_DOCUMENT = "commit"
# How many alerts wait between aggregation and enrichment before intake waits (back-pressure).
ALERT_QUEUE_SIZE = 10_000
# Alerts the sender takes from the queue at once: enriched together, spooled with one fsync.
SEND_BATCH = 100
# HA: a checkpoint waits this long for the alerts it covers to be delivered, else it is
# skipped this time (a new leader re-sends what a checkpoint does not cover: never a loss).
HA_DELIVERY_WAIT = 5.0


@dataclass
class Checkpoint:
    """One scope's durable position: its resourceVersion and seen-ledger, and while a first
    start's list is still under way, the age limit that list applies (`not_before`)."""

    resource_version: str | None
    ledger: SeenLedger
    not_before: float | None = None

    def to_json(self, scope: WatchScope, saved_at: float) -> bytes:
        return orjson.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "scope": scope.describe(),
                "saved_at": saved_at,
                "resource_version": self.resource_version,
                "not_before": self.not_before,
                "ledger": self.ledger._counts,
            }
        )

    def change_json(self, saved_at: float) -> bytes:
        """What changed since the last `to_json` or `change_json` (the ledger must track
        changes): a record of the scope's journal."""
        return orjson.dumps(
            {
                "saved_at": saved_at,
                "resource_version": self.resource_version,
                "not_before": self.not_before,
                "ledger": self.ledger.take_changes(),
            }
        )

    def apply_change(self, data: bytes) -> None:
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("ledger"), dict):
            raise ValueError("checkpoint change record is damaged")
        rv = doc.get("resource_version")
        self.resource_version = str(rv) if rv else None
        self.not_before = _number_or_none(doc.get("not_before"))
        self.ledger.apply_changes(doc["ledger"])

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
            raise ValueError("unknown checkpoint format")
        ledger = SeenLedger.from_document(doc.get("ledger") or {})
        rv = doc.get("resource_version")
        return cls(str(rv) if rv else None, ledger, _number_or_none(doc.get("not_before")))


def _number_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class CheckpointedRunner:
    """What a ScopeRunner and an ObjectRunner share: a checkpoint in the store, read back as
    its full version then its changes, and taken for each commit under the daemon's lock."""

    scope: WatchScope
    store: StateStore
    clock: Clock
    checkpoint: Checkpoint
    log: Any
    _dirty: bool
    _torn: bool
    _in_store: bool  # changes need a full version in the store to apply to

    async def _load_checkpoint(self, what: str) -> bool:
        """Restore the stored checkpoint; False when there is none (or it is unreadable)."""
        data = await self.store.load(self.scope.id)
        found = False
        if data is not None:
            try:
                checkpoint = Checkpoint.from_json(data)
                for change in await self.store.load_changes(self.scope.id):
                    checkpoint.apply_change(change)
            except (ValueError, orjson.JSONDecodeError) as exc:
                self.log.error(f"{what} unreadable, starting afresh", error=str(exc))
            else:
                self.checkpoint, found = checkpoint, True
        if self.store.incremental:
            self.checkpoint.ledger.track_changes()
        # Nothing stored: the next commit writes it in full (with a first start's state).
        self._dirty = not found
        self._in_store = found
        return found

    @property
    def checkpoint_id(self) -> str:
        return self.scope.id

    @property
    def torn(self) -> bool:
        """Processing of an object was cancelled half-way (shutdown)."""
        return self._torn

    def take(self, full: bool) -> tuple[bytes | None, bytes | None]:
        """(document, change) for the next commit; call with the daemon's lock held. With
        `full` the whole checkpoint, else what changed (the whole checkpoint when the store
        keeps no changes); (None, None) when nothing changed.

        Nothing also when processing was cancelled half-way (at shutdown): the ledger may then
        count an occurrence that never reached the pipeline, so the last checkpoint stays
        and the object is processed again after a restart."""
        if self._torn or not (self._dirty or full):
            return None, None
        self._dirty = False
        now = self.clock.now()
        if full or not self.store.incremental or not self._in_store:
            self._in_store = True
            if self.store.incremental:
                self.checkpoint.ledger.take_changes()  # the document holds them all
            return self.checkpoint.to_json(self.scope, now), None
        return None, self.checkpoint.change_json(now)


class ScopeRunner(CheckpointedRunner):
    """Consumes one watch scope: normalize with the ledger, hand occurrences to the pipeline.

    Every runner shares the daemon's lock with the pipeline and the checkpoint: a snapshot is
    taken only between objects, never while one is half processed, so it never claims an
    occurrence that has not reached the spool (or the aggregator's state, saved with it).
    """

    def __init__(
        self,
        scope: WatchScope,
        source: SourceConfig,
        store: StateStore,
        intake: Intake,
        clock: Clock,
        lock: asyncio.Lock,
        commit_now: Callable[[], Awaitable[None]],
    ) -> None:
        self.scope = scope
        self.source = source
        self.store = store
        self.intake = intake
        self.clock = clock
        self.checkpoint = Checkpoint(None, SeenLedger())
        self.normalizer = Normalizer(scope.cluster, self.checkpoint.ledger)
        self._lock = lock
        self._commit_now = commit_now
        self._dirty = False
        self._torn = False
        self._in_store = False
        self.established = False
        self.listed = asyncio.Event()  # set after each complete list (tests, probes)
        self.last_activity: float | None = None
        self.watch_opens = 0
        self.malformed = 0
        self._opened = asyncio.Condition()
        self.log = log.bind(cluster=scope.cluster, namespace=scope.namespace or "*")

    async def load(self) -> str | None:
        """Restore the checkpoint (its full version, then its changes); on a first start,
        skip what happened before start."""
        if not await self._load_checkpoint("checkpoint"):
            self.checkpoint.not_before = self.clock.now() - self.source.startup_max_age
            self.log.info(
                "first start: skipping events from before now",
                max_age_seconds=self.source.startup_max_age,
            )
        elif self.checkpoint.not_before is not None:
            self.log.info(
                "first start's list was cut short; listing again with its age limit",
                known_events=len(self.checkpoint.ledger),
            )
        else:
            self.log.info(
                "resuming from checkpoint",
                resource_version=self.checkpoint.resource_version,
                known_events=len(self.checkpoint.ledger),
            )
        self.normalizer = Normalizer(
            self.scope.cluster, self.checkpoint.ledger, not_before=self.checkpoint.not_before
        )
        return self.checkpoint.resource_version

    async def _process(self, change: str, event: RawEvent) -> None:
        try:
            occurrence = self.normalizer.apply(change, event)
        except MalformedEvent as exc:
            self.malformed += 1
            meta = event.metadata
            self.log.error(
                "malformed event skipped",
                reason=str(exc),
                event=(meta.name if meta is not None else None) or "?",
            )
            return
        if occurrence is not None:
            await self.intake(occurrence)

    def _touch(self) -> None:
        self._dirty = True
        self.last_activity = self.clock.monotonic()

    # -- WatchConsumer ------------------------------------------------------------------------

    async def on_list_start(self) -> None:
        # Mark-and-sweep: the listed events mark their ledger entries as they are observed,
        # and the end of the list drops the unmarked (expired) ones; no set of listed uids.
        async with self._lock:
            self.checkpoint.ledger.begin_relist()

    async def on_listed(self, events: list[RawEvent], resource_version: str) -> None:
        async with self._lock:
            self._torn = True
            for event in sorted(events, key=_event_time):
                await self._process("ADDED", event)
            self._dirty = True
            self._torn = False

    async def on_list_done(self, resource_version: str) -> None:
        async with self._lock:
            dropped = self.checkpoint.ledger.end_relist()
            self.checkpoint.resource_version = resource_version
            self.normalizer.not_before = self.checkpoint.not_before = None
            self.established = True
            self._touch()
        # Checkpoint at once: a crash before the first periodic commit would otherwise make
        # the next start a "first start" that skips what happened while we were down.
        await self._commit_now()
        self.listed.set()
        self.log.info(
            "listed",
            resource_version=resource_version,
            known_events=len(self.checkpoint.ledger),
            expired=dropped,
        )

    async def on_change(self, change: str, event: RawEvent, resource_version: str) -> None:
        async with self._lock:
            self._torn = True
            await self._process(change, event)
            self.checkpoint.resource_version = resource_version
            self._touch()
            self._torn = False

    async def on_bookmark(self, resource_version: str) -> None:
        async with self._lock:
            self.checkpoint.resource_version = resource_version
            self._touch()

    async def on_watch_open(self, resource_version: str) -> None:
        self.established = True
        self.last_activity = self.clock.monotonic()
        async with self._opened:
            self.watch_opens += 1
            self._opened.notify_all()

    async def wait_watching(self, opens: int = 1, timeout: float | None = 30.0) -> None:
        """Wait until the watch has been opened `opens` times in total (for tests, probes)."""
        async with self._opened:
            await asyncio.wait_for(
                self._opened.wait_for(lambda: self.watch_opens >= opens), timeout
            )

    def status(self) -> WatchStatus:
        return WatchStatus(
            name=self.scope.id,
            cluster=self.scope.cluster,
            namespace=self.scope.namespace,
            scope=self.scope.describe(),
            established=self.established,
            last_activity=self.last_activity,
        )


async def cancel_and_wait(tasks: list[asyncio.Task[None]], patience: float = 5.0) -> None:
    """Cancel `tasks` and wait for them; one that has not stopped after `patience` seconds is
    named in the log and cancelled again (a stop must never hang on one task)."""
    done_tasks = list(tasks)
    for task in tasks:
        task.cancel()
    while tasks:
        _, pending = await asyncio.wait(tasks, timeout=patience)
        if not pending:
            break
        log.error(
            "tasks did not stop when cancelled; cancelling again",
            tasks=sorted(t.get_name() for t in pending),
        )
        for task in pending:
            task.cancel()
        tasks = list(pending)
    for task in done_tasks:
        if not task.cancelled():
            task.exception()  # retrieved: a failure at stop is not reported again at exit


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until `event` is set or `timeout` seconds pass. Not `asyncio.wait_for`: on
    Python 3.11 it swallows a cancellation that lands as the event is set, and a loop around
    an event set on every alert then never stops (seen: a daemon that ignored SIGTERM)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def _event_time(event: RawEvent) -> float:
    series, meta = event.series, event.metadata
    stamp = (
        (series.last_observed_time if series is not None else None)
        or event.deprecated_last_timestamp
        or event.event_time
        or (meta.creation_timestamp if meta is not None else None)
    )
    try:
        return parse_time(stamp) if stamp else 0.0
    except ValueError:
        return 0.0


class ObjectRunner(CheckpointedRunner):
    """Consumes one object watch (the Pods of a namespace or of all, or the Nodes): keeps its
    cache store, and with detectors on hands each change to the `Detector` and the findings
    to the pipeline, as a ScopeRunner hands it occurrences.

    The cache itself is never saved: a start lists again. What is saved is the detectors'
    seen-ledger (the scope's checkpoint, committed with everything else), so a relist or a
    restart reports nothing twice. A malformed object is logged and skipped.
    """

    def __init__(
        self,
        scope: WatchScope,
        objects: ObjectStore[Any],
        convert: Callable[[Any], Any],
        detector: Detector | None,
        store: StateStore,
        intake: Intake,
        clock: Clock,
        lock: asyncio.Lock,
        commit_now: Callable[[], Awaitable[None]],
    ) -> None:
        self.scope = scope
        self.objects = objects
        self.convert = convert
        self.detector = detector
        self.store = store
        self.intake = intake
        self.clock = clock
        self._lock = lock
        self._commit_now = commit_now
        self.checkpoint = Checkpoint(None, detector.ledger if detector else SeenLedger())
        self._nodes = scope.resource is NODES
        self._dirty = False
        self._torn = False
        self._in_store = False
        self.established = False
        self.listed = asyncio.Event()
        self.last_activity: float | None = None
        self.malformed = 0
        self.log = log.bind(
            cluster=scope.cluster, namespace=scope.namespace or "*", resource=scope.resource.plural
        )

    async def load(self) -> None:
        """Restore the detectors' ledger; without one (a first start), findings already
        present are recorded, not reported (unless `detectors.report_existing`)."""
        detector = self.detector
        if detector is None:
            return
        found = await self._load_checkpoint("detector checkpoint")
        detector.ledger = self.checkpoint.ledger
        detector.baseline = not found and not detector.config.report_existing

    def _apply(self, change: str, obj: Any, now: float) -> list[Occurrence]:
        try:
            facts = self.convert(obj)
        except DecodeError as exc:
            self.malformed += 1
            meta = getattr(obj, "metadata", None)
            self.log.error(
                f"malformed {self.scope.resource.plural[:-1]} skipped",
                reason=str(exc),
                object=getattr(meta, "name", None) or "?",
            )
            return []
        key = ("" if self._nodes else facts.namespace, facts.name)
        detector = self.detector
        if change == "DELETED":
            old = self.objects.remove(key)
            if detector is not None:
                if self._nodes:
                    detector.node_deleted(old or facts)
                else:
                    detector.pod_deleted(old or facts)
            return []
        old = self.objects.put(key, facts)
        if detector is None:
            return []
        if self._nodes:
            return detector.node_changed(old, facts, now)
        return detector.pod_changed(old, facts, now)

    async def _process(self, changes: list[tuple[str, Any]]) -> None:
        now = self.clock.now()
        self._torn = True
        for change, obj in changes:
            for occurrence in self._apply(change, obj, now):
                await self.intake(occurrence)
        self._torn = False

    def _touch(self) -> None:
        """Only a ledger change needs a checkpoint: the cache is not saved, nor its
        resourceVersion (a start lists again), so most Pod updates write nothing."""
        detector = self.detector
        if detector is not None and detector.changed:
            detector.changed = False
            self._dirty = True
        self.last_activity = self.clock.monotonic()

    # -- WatchConsumer ------------------------------------------------------------------------

    async def on_list_start(self) -> None:
        async with self._lock:
            self.objects.begin_relist()
            self.checkpoint.ledger.begin_relist()

    async def on_listed(self, objects: list[Any], resource_version: str) -> None:
        async with self._lock:
            await self._process([("ADDED", obj) for obj in objects])
            self._touch()

    async def on_list_done(self, resource_version: str) -> None:
        async with self._lock:
            for gone in self.objects.end_relist():
                if self.detector is not None:
                    if self._nodes:
                        self.detector.node_deleted(gone)
                    else:
                        self.detector.pod_deleted(gone)
            dropped = self.checkpoint.ledger.end_relist()
            if self.detector is not None:
                self.detector.baseline = False
                self._dirty = True  # the sweep, and a first start's baseline
            self.established = True
            self._touch()
        if self.detector is not None:
            await self._commit_now()
        self.listed.set()
        self.log.info(
            "objects listed",
            resource_version=resource_version,
            objects=len(self.objects),
            known_findings=len(self.checkpoint.ledger),
            expired=dropped,
        )

    async def on_change(self, change: str, obj: Any, resource_version: str) -> None:
        async with self._lock:
            await self._process([(change, obj)])
            self._touch()

    async def on_bookmark(self, resource_version: str) -> None:
        self.last_activity = self.clock.monotonic()

    async def on_watch_open(self, resource_version: str) -> None:
        self.established = True
        self.last_activity = self.clock.monotonic()

    async def tick(self) -> None:
        """The time-based detectors (Pods stuck Terminating), at the daemon's clock."""
        detector = self.detector
        if detector is None or not (detector.terminating or detector.sick_nodes):
            return
        async with self._lock:
            self._torn = True
            for occurrence in detector.tick(self.clock.now()):
                await self.intake(occurrence)
            if detector.changed:
                detector.changed = False
                self._dirty = True
            self._torn = False

    # -- checkpoint (the detectors' ledger) -----------------------------------------------------

    def take(self, full: bool) -> tuple[bytes | None, bytes | None]:
        """As ScopeRunner's; nothing at all without detectors (no state to keep)."""
        if self.detector is None:
            return None, None
        return super().take(full)


def object_scopes(cluster: str, sources: list[SourceConfig]) -> list[WatchScope]:
    """The object watches of one cluster: the Pods where its sources watch events (all
    namespaces if any source watches all), and the Nodes."""
    namespaces: list[str | None] = []
    for source in sources:
        if source.cluster not in (None, cluster):
            continue
        namespaces += list(source.namespaces) or [None]
    scoped = [None] if None in namespaces or not namespaces else list(dict.fromkeys(namespaces))
    pods = [WatchScope(cluster, ns, None, PODS) for ns in scoped]
    return [*pods, WatchScope(cluster, None, None, NODES)]


class Pipeline:
    """filter → aggregate → enrich → route → spool, wired in that order.

    `intake` runs under the daemon's lock (called by the watches) and is cheap: filter and
    aggregation are pure and fast. Alerts that aggregation lets out are numbered in order
    (their emit *mark*) and wait in a queue for one sender task that enriches them (bounded
    by the enrichment deadline, off the watch path), routes them and spools them, in order.
    A checkpoint records the mark of the last alert its state let out and is written only
    once every alert up to that mark is on disk (`wait_spooled`); the lanes send an alert
    only once a durable checkpoint covers its mark.
    """

    def __init__(
        self,
        config: Config,
        delivery: DeliveryStage,
        enricher: Enricher,
        clock: Clock,
        lock: asyncio.Lock,
    ) -> None:
        self.filter = EventFilter(config.filters)
        self.aggregator = Aggregator(config.aggregation, node_of=self._node_of)
        self.routing = RoutingStage.from_config(config)
        self.enricher = enricher
        self.delivery = delivery
        self.clock = clock
        self.lock = lock
        # (mark, alert, published): a published alert is one occurrence for the receivers
        # with `records: occurrences` (a fleet's edge): enriched, never routed.
        self._queue: asyncio.Queue[tuple[int, Alert, bool]] = asyncio.Queue(ALERT_QUEUE_SIZE)
        self.publishers = [
            name for name, lane in delivery.lanes.items() if lane.notifier.takes_occurrences
        ]
        # An edge with no receiver of alerts keeps no windows: nothing would read them.
        self.aggregating = bool(config.alert_receivers)
        self.emitted = 0  # the last emit mark handed out
        self.spooled = 0  # every alert up to this mark is on disk (or went nowhere)
        self._spooled_changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self.commit_wanted = asyncio.Event()  # alerts wait for a checkpoint to go out
        self.dirty = False
        self._torn = False
        # Plain counters, read by the metrics collector at scrape time.
        self.occurrences: dict[str, int] = {}
        self.filtered: dict[str, int] = {}
        self.muted = 0

    def _node_of(self, occ: Occurrence) -> str | None:
        """The Node of an occurrence's Pod, from the cluster's object cache (the Pod and
        Node watches of the detectors or enrichment.watch_objects), or None."""
        objects = self.enricher.objects.get(occ.cluster)
        if objects is None:
            return None
        pod = objects.cached_pod(occ.regarding.namespace or occ.namespace, occ.regarding.name)
        return pod.node if pod is not None and pod.node else None

    def resume_marks(self, committed: int) -> None:
        """After a restart: marks go on from the last checkpoint's."""
        self.emitted = self.spooled = committed

    # -- under the lock -------------------------------------------------------------------------

    async def intake(self, occurrence: Occurrence) -> None:
        cluster = occurrence.cluster
        self.occurrences[cluster] = self.occurrences.get(cluster, 0) + 1
        if not self.filter.passes(occurrence):
            self.filtered[cluster] = self.filtered.get(cluster, 0) + 1
            return
        self._torn = True
        if self.publishers:
            await self._enqueue(Alert.from_occurrence(occurrence), published=True)
        if self.aggregating:
            alerts = self.aggregator.add(occurrence, self.clock.now())
            self.dirty = True
            self._wake.set()
            for alert in alerts:
                await self._enqueue(alert)
        self._torn = False

    async def _enqueue(self, alert: Alert, published: bool = False) -> None:
        # The mark counts only once the alert is queued: a put cancelled while the queue is
        # full (shutdown) must not leave a mark that no alert will ever reach the spool with.
        await self._queue.put((self.emitted + 1, alert, published))
        self.emitted += 1
        self.commit_wanted.set()

    def snapshot(self, full: bool = False) -> bytes | None:
        """The aggregator's state if it changed (always with `full`), and not while an alert
        it let out was cancelled on its way to the queue (shutdown with a full queue)."""
        if self._torn or not (self.dirty or full):
            return None
        self.dirty = False
        return self.aggregator.snapshot()

    async def wait_spooled(self, mark: int) -> None:
        """Wait until every alert up to `mark` is spooled (or was routed nowhere)."""
        async with self._spooled_changed:
            await self._spooled_changed.wait_for(lambda: self.spooled >= mark)

    # -- tasks ----------------------------------------------------------------------------------

    async def run_ticks(self) -> None:
        """Let out what is due by time (group wait/interval/repeat, resolves)."""
        while True:
            deadline = self.aggregator.next_deadline()
            wait = 1.0 if deadline is None else min(max(deadline - self.clock.now(), 0.0), 1.0)
            self._wake.clear()
            await wait_event(self._wake, wait)
            async with self.lock:
                alerts = self.aggregator.tick(self.clock.now())
                if alerts:
                    self.dirty = True
                self._torn = True
                for alert in alerts:
                    await self._enqueue(alert)
                self._torn = False

    async def run_sender(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < SEND_BATCH:
                batch.append(self._queue.get_nowait())
            per_receiver: dict[str, tuple[list[Alert], list[int]]] = {}
            # Occurrences an edge publishes are enriched too: the facts travel with them to
            # a central instance that may not reach this cluster's API.
            enriched = await self.enricher.enrich_all(alert for _, alert, _ in batch)
            for (mark, _, published), outgoing in zip(batch, enriched, strict=True):
                for receiver in self.publishers if published else self._route(outgoing):
                    alerts, marks = per_receiver.setdefault(receiver, ([], []))
                    alerts.append(outgoing)
                    marks.append(mark)
            # One spool write and one fsync per receiver for the whole batch, in order.
            for receiver, (alerts, marks) in per_receiver.items():
                await self.submit_many(receiver, alerts, marks)
            async with self._spooled_changed:
                self.spooled = batch[-1][0]
                self._spooled_changed.notify_all()

    def _route(self, alert: Alert) -> list[str]:
        """The receivers `alert` goes to (none when a silence or inhibition mutes it)."""
        decision = self.routing.decide(alert, self.clock.now())
        if decision.muted_by:
            self.muted += 1
            log.info("alert muted", muted_by=decision.muted_by, **alert_fields(alert))
            return []
        receivers = []
        for receiver in decision.deliver_to:
            lane = self.delivery.lanes.get(receiver)
            if alert.status == "resolved" and lane is not None and not lane.notifier.sends_resolved:
                continue  # resolved notifications are opt-in per receiver
            receivers.append(receiver)
        return receivers

    async def submit(self, receiver: str, alert: Alert) -> None:
        """Spool an alert that does not come from the event stream (a self-alert): it has
        no mark and goes out without waiting for a checkpoint."""
        await self.submit_many(receiver, [alert])

    async def submit_many(
        self, receiver: str, alerts: list[Alert], marks: list[int] | None = None
    ) -> None:
        """Spool `alerts` for `receiver`; a full disk is waited out, never dropped (and no
        checkpoint moves past them meanwhile: it waits for them, `wait_spooled`)."""
        delay = 0.5
        while True:
            try:
                await self.delivery.submit_many(receiver, alerts, marks)
                return
            except OSError as exc:
                log.error(
                    "cannot spool the alerts; retrying",
                    receiver=receiver,
                    alerts=len(alerts),
                    error=str(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


def watch_scopes(
    cluster: str, sources: list[SourceConfig]
) -> list[tuple[WatchScope, SourceConfig]]:
    out = []
    for source in sources:
        if source.cluster not in (None, cluster):
            continue
        namespaces: list[str | None] = list(source.namespaces) or [None]
        for namespace in namespaces:
            out.append((WatchScope(cluster, namespace, source.field_selector), source))
    return out


def watch_settings(source: SourceConfig) -> WatchSettings:
    return WatchSettings(
        page_size=source.page_size,
        watch_timeout=source.watch_timeout,
        stall_timeout=source.stall_timeout,
        max_line_bytes=source.max_line_bytes,
    )


class Daemon:
    """Runs every configured watch until `stop` is set, then drains and flushes state."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        clock: Clock | None = None,
        store: StateStore | None = None,
        notifiers: list[Notifier] | None = None,
        env: Mapping[str, str] | None = None,
        sleep: Sleep | None = None,
        settings: WatchSettings | None = None,
        spool_dir: Path | None = None,
        metrics: Metrics | None = None,
        serve_ops: bool = True,
        may_lead: Callable[[], bool] | None = None,
        stream_readers: Callable[[BaseModel | None], StreamReader] = stream_reader,
    ) -> None:
        """`metrics`, `serve_ops` and `may_lead` are for a shard's daemon (kube_event_watcher.
        shards): its counters go into the process's metrics, the process serves the ops
        endpoints, and it takes its shard's lease only while `may_lead()` says so.
        `stream_readers` makes the reader of `fleet.consume` (tests hand in their own)."""
        self.loaded = loaded
        config = loaded.config
        self.kubeconfig = kubeconfig
        self.context = context
        self.clock = clock or SystemClock()
        self.store = store
        self.env = env if env is not None else os.environ
        self._sleep = sleep or asyncio.sleep
        self._settings = settings
        self._stream_readers = stream_readers
        types = notifier_types()
        self.notifiers = (
            notifiers
            if notifiers is not None
            else [
                build_notifier(cfg, types)
                for cfg in loaded.receivers.values()
                if isinstance(cfg, ReceiverConfig)
            ]
        )
        self.delivery = DeliveryStage(
            self.notifiers,
            spool_dir or Path(config.state.path).expanduser() / "spool",
            clock=self.clock,
            fsync=config.state.fsync,
        )
        self.lock = asyncio.Lock()
        self._committing = asyncio.Lock()  # one commit at a time, in order
        self._committed_mark = 0
        self._need_full = False
        self.commits = {"written": 0, "failed": 0}  # for the metrics
        self._metrics_bound = False  # a lane added by a reload binds its own once they are
        self.enricher = Enricher({}, config.enrichment, self.clock)
        self.pipeline = Pipeline(config, self.delivery, self.enricher, self.clock, self.lock)
        shard = metrics is not None
        self.metrics = metrics if metrics is not None else Metrics()
        self.may_lead = may_lead
        self.ops: OpsServer | None = (
            OpsServer(
                config.ops,
                self.watch_statuses,
                self.metrics,
                self.clock,
                standby=self.standby_status,
            )
            if serve_ops
            else None
        )
        self.runners: list[ScopeRunner] = []
        self.object_runners: list[ObjectRunner] = []
        self.fleet: FleetRunner | None = None  # a fleet's central instance: the stream it reads
        self.objects: dict[str, ClusterObjects] = {}  # per cluster, when the object watches run
        self.detector_checks = 0  # time-based detector passes done (tests, metrics)
        self.watches: list[ListWatch[Any]] = []
        self._https: list[KubeHttp] = []
        self.ready = asyncio.Event()
        # HA: the elector once the cluster is known; `standing_by` is set while another
        # replica leads (the ops server says so; systemd hears READY=1 anyway).
        self.elector: LeaderElector | None = None
        self.standing_by = asyncio.Event()
        self.metrics.bind(
            "leader",
            self,
            lambda: 1.0 if self.ready.is_set() and not self.standing_by.is_set() else 0.0,
        )
        # SIGHUP reloads by result (cli's reload loop counts into it); both results are
        # there from the start, so a rule on `increase(...)` sees the first rejection.
        self.reloads: dict[str, int] = {"applied": 0, "rejected": 0}
        self.metrics.bind("config_reloads", self, "reloads", key_label="result")
        if not shard:  # the process binds it once
            self.metrics.bind(
                "build_info", self, lambda: 1.0, **build_labels(__version__, hot_path_compiled())
            )

    def standby_status(self) -> dict[str, Any] | None:
        """/readyz's answer while another replica leads: ready (so a rollout proceeds), and
        says it is a standby; None when this replica leads or HA is off."""
        if self.elector is None or not self.standing_by.is_set():
            return None
        return {
            "ready": True,
            "role": "standby",
            "lease": self.elector.describe(),
            "identity": self.elector.identity,
            "leader": self.elector.holder,
        }

    def watch_statuses(self) -> list[WatchStatus]:
        statuses = [runner.status() for runner in self.runners]
        return statuses if self.fleet is None else [*statuses, self.fleet.status()]

    async def _endpoints(self) -> list[tuple[ClusterConfig, ApiEndpoint]]:
        config = self.loaded.config
        if config.fleet is not None and not config.clusters:
            return []  # a central instance that watches nothing itself needs no API
        clusters = config.clusters or [ClusterConfig(name=IMPLICIT_CLUSTER)]
        return [
            (c, await resolve_endpoint(c, self.kubeconfig, self.context, self.env))
            for c in clusters
        ]

    def _make_store(self, first: tuple[ClusterConfig, KubeHttp] | None) -> StateStore:
        state = self.loaded.config.state
        if state.backend == "memory":
            return MemoryStore()
        if state.backend == "configmap":
            assert first is not None, (
                "the config's fleet checks refuse a configmap without clusters"
            )
            cluster, http = first
            namespace = state.namespace or own_namespace(cluster, self.env)
            return ConfigMapStore(http, namespace, state.configmap)
        return FileStore(state.path, fsync=state.fsync)

    def _make_elector(self, first: tuple[ClusterConfig, KubeHttp]) -> LeaderElector:
        ha = self.loaded.config.ha
        cluster, http = first
        return LeaderElector(
            http,
            ha.namespace or own_namespace(cluster, self.env),
            ha.lease,
            default_identity(self.env),
            LeaseTimings(ha.lease_duration, ha.renew_deadline, ha.retry_period),
            self.clock,
        )

    async def _lead(self, stop: asyncio.Event, first: tuple[ClusterConfig, KubeHttp]) -> bool:
        """HA: wait until this replica holds the lease (False: stop came first). The local
        spool is emptied first: in HA a checkpoint covers only delivered alerts, so whatever
        a spool still holds is sent again from the event stream by whoever leads."""
        self.elector = self._make_elector(first)
        self.standing_by.set()
        self.elector.log.info("HA: waiting for the lease before watching")
        try:
            if not await self.elector.acquire(stop, self.may_lead):
                return False
        finally:
            self.standing_by.clear()
        for lane in self.delivery.lanes.values():
            lane.spool.path.unlink(missing_ok=True)
        return True

    def _bind_lane(self, name: str, lane: ReceiverLane) -> None:
        bind = self.metrics.bind
        bind(
            "notifications",
            lane,
            lambda: {"delivered": lane.sent, "failed": lane.failed, "retried": lane.retried},
            key_label="outcome",
            receiver=name,
        )
        bind("notify_queue_depth", lane, "queue_depth", receiver=name)
        bind("notify_oldest_age_seconds", lane, "oldest_age", receiver=name)
        bind("delivery_latency_seconds", lane, "latency", receiver=name)
        bind("notify_spool_bytes", lane, "spool_bytes", receiver=name)

    def _bind_metrics(self) -> None:
        self._metrics_bound = True
        bind = self.metrics.bind
        pipeline = self.pipeline
        for http in self._https:  # a sample per cluster from the start, 0 until one counts
            pipeline.occurrences.setdefault(http.endpoint.cluster, 0)
            pipeline.filtered.setdefault(http.endpoint.cluster, 0)
        bind("occurrences", pipeline, "occurrences", key_label="cluster")
        bind("filtered", pipeline, "filtered", key_label="cluster")
        bind(
            "alerts_routed",
            pipeline,
            lambda: {"routed": pipeline.routing.routed, "muted": pipeline.routing.muted},
            key_label="outcome",
        )
        bind(
            "aggregation_evictions",
            pipeline,
            lambda: dict(pipeline.aggregator.evictions),
            key_label="stage",
        )
        for watch in self.watches:
            labels = {"cluster": watch.scope.cluster, "scope": watch.scope.id}
            bind("watch_restarts", watch, "reconnects", **labels)
            bind("watch_relists", watch, "relists", **labels)
            bind("watch_events", watch, "events_by_type", key_label="type", **labels)
        for name, lane in self.delivery.lanes.items():
            self._bind_lane(name, lane)
        for runner in self.object_runners:
            labels = {"cluster": runner.scope.cluster, "scope": runner.scope.id}
            bind("object_cache_objects", runner, lambda r=runner: float(len(r.objects)), **labels)  # type: ignore[misc]
            if runner.detector is not None:
                bind(
                    "detector_findings",
                    runner.detector,
                    "findings",
                    key_label="reason",
                    cluster=runner.scope.cluster,
                )
        for http in self._https:
            bind(
                "api_requests",
                http,
                "requests",
                key_label="purpose",
                cluster=http.endpoint.cluster,
            )
        if self.fleet is not None:
            bind(
                "fleet_records",
                self.fleet,
                "records",
                key_label="result",
                stream=self.fleet.reader.name,
            )
        bind("checkpoint_commits", self, "commits", key_label="result")
        bind(
            "alerts_awaiting_checkpoint",
            self,
            lambda: float(max(0, pipeline.emitted - self._committed_mark)),
        )
        bind("state_written_bytes", self, lambda: getattr(self.store, "written_bytes", None))
        bind(
            "enrichment_cache_requests",
            self.enricher,
            self._cache_requests,
            key_label=("cache", "result"),
        )

    def _cache_requests(self) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for stats in self.enricher.stats():
            out[(stats.name, "hit")] = stats.hits
            out[(stats.name, "miss")] = stats.misses
            out[(stats.name, "negative_hit")] = stats.negative_hits
        if self.objects:
            out[("objects_watch", "hit")] = self.enricher.from_watch
        return out

    async def run(self, stop: asyncio.Event) -> None:
        config = self.loaded.config
        tasks: list[asyncio.Task[None]] = []
        started: list[str] = []
        lost = False
        try:
            if self.ops is not None:
                await self.ops.start()
                started.append("ops")
            endpoints = await self._endpoints()
            for _, endpoint in endpoints:
                http = KubeHttp(endpoint)
                self._https.append(http)
                self.enricher.lookups[endpoint.cluster] = enrichment_lookups(
                    http, config.enrichment, self.clock
                )
                log.info(
                    "cluster",
                    cluster=endpoint.cluster,
                    server=endpoint.server,
                    auth=endpoint.auth_method,
                    origin="; ".join(endpoint.origin),
                )
            if self.store is None:
                self.store = self._make_store(
                    (endpoints[0][0], self._https[0]) if endpoints else None
                )
            if config.ha.enabled:
                if not await self._lead(stop, (endpoints[0][0], self._https[0])):
                    return
                assert self.elector is not None
                tasks.append(asyncio.create_task(self.elector.hold(), name="lease"))
            # HA sends at once (a checkpoint there waits for delivery instead: the spool is
            # local to a replica); otherwise alerts go out once a checkpoint covers them.
            await self.delivery.start(gated=not config.ha.enabled)
            started.append("delivery")
            committed = await self._load_committed_mark()
            if not config.ha.enabled:
                committed = await self.delivery.resume(committed)
            self._committed_mark = committed or 0
            self.pipeline.resume_marks(self._committed_mark)
            await self._restore_aggregation()
            if self.loaded.fleet_stream is not None:
                await self._read_fleet_stream(tasks)
            for (_, endpoint), http in zip(endpoints, self._https, strict=True):
                if config.watches_objects:
                    await self._watch_objects(endpoint.cluster, http)
                for scope, source in watch_scopes(endpoint.cluster, config.sources):
                    runner = ScopeRunner(
                        scope,
                        source,
                        self.store,
                        self.pipeline.intake,
                        self.clock,
                        self.lock,
                        self.commit,
                    )
                    rv = await runner.load()
                    watch = ListWatch(
                        http,
                        scope,
                        runner,
                        self._settings or watch_settings(source),
                        rv,
                        sleep=self._sleep,
                    )
                    self.runners.append(runner)
                    self.watches.append(watch)
            self._bind_metrics()
            tasks.append(asyncio.create_task(self.pipeline.run_sender(), name="sender"))
            tasks.append(asyncio.create_task(self.pipeline.run_ticks(), name="aggregation"))
            tasks.append(asyncio.create_task(self._commit_loop(), name="checkpoint"))
            if config.detectors.enabled:
                tasks.append(asyncio.create_task(self._detector_ticks(), name="detectors"))
            if config.ops.self_alert_receiver:
                monitor = StaleWatchMonitor(config.ops.stale_after, config.ops.self_alert_receiver)
                receiver = config.ops.self_alert_receiver
                tasks.append(
                    asyncio.create_task(
                        run_self_alert_loop(
                            monitor,
                            self.watch_statuses,
                            lambda alert: self.pipeline.submit(receiver, alert),
                            self.clock,
                            stop,
                            config.ops.self_alert_interval,
                        ),
                        name="self-alert",
                    )
                )
            watch_tasks = [
                asyncio.create_task(watch.run(), name=watch.scope.id) for watch in self.watches
            ]
            tasks.extend(watch_tasks)
            self.ready.set()
            stopped = asyncio.create_task(stop.wait(), name="stop")
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            for task in done:
                if task is not stopped and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        except LeadershipLost as exc:
            lost = True
            log.error("HA: lost the lease; stopping at once, exiting to run again", reason=str(exc))
            raise
        finally:
            if lost:
                await self._abandon(tasks, started)
            else:
                await self._shutdown(tasks, started)

    async def _read_fleet_stream(self, tasks: list[asyncio.Task[None]]) -> None:
        """A fleet's central instance: read the edges' occurrences into the pipeline."""
        fleet = self.loaded.config.fleet
        assert fleet is not None and self.store is not None
        self.fleet = FleetRunner(
            self._stream_readers(self.loaded.fleet_stream),
            self.store,
            self.pipeline.intake,
            self.clock,
            self.lock,
            fleet.startup_max_age,
            self.enricher.remember_edge_facts,
        )
        await self.fleet.load()
        tasks.append(asyncio.create_task(self.fleet.run(), name="fleet"))

    async def _watch_objects(self, cluster: str, http: KubeHttp) -> None:
        """Start the cluster's Pod and Node watches (enrichment reads them; the detectors,
        when on, turn their changes into occurrences)."""
        config = self.loaded.config
        objects = self.objects[cluster] = ClusterObjects()
        self.enricher.objects[cluster] = objects
        interner = Interner()
        settings = self._settings or WatchSettings()
        for scope in object_scopes(cluster, config.sources):
            is_nodes = scope.resource is NODES
            convert: Callable[[Any], Any]
            if is_nodes:
                store: ObjectStore[Any] = objects.nodes
                convert = node_from_wire
            else:
                store = objects.pod_store(scope.namespace)
                convert = lambda pod: pod_from_wire(pod, interner)  # noqa: E731
            detector = None
            if config.detectors.enabled:
                detector = Detector(cluster, SeenLedger(), config.detectors)
            assert self.store is not None
            runner = ObjectRunner(
                scope,
                store,
                convert,
                detector,
                self.store,
                self.pipeline.intake,
                self.clock,
                self.lock,
                self.commit,
            )
            await runner.load()
            self.object_runners.append(runner)
            self.watches.append(ListWatch(http, scope, runner, settings, None, sleep=self._sleep))

    async def _detector_ticks(self) -> None:
        """Let the time-based detectors look, every `detectors.check_interval`."""
        interval = self.loaded.config.detectors.check_interval
        while True:
            await asyncio.sleep(interval)
            for runner in self.object_runners:
                await runner.tick()
            self.detector_checks += 1

    def _checkpointed(self) -> list[ScopeRunner | ObjectRunner | FleetRunner]:
        fleet = [self.fleet] if self.fleet is not None else []
        return [*self.runners, *(r for r in self.object_runners if r.detector is not None), *fleet]

    async def _abandon(self, tasks: list[asyncio.Task[None]], started: list[str]) -> None:
        """HA, leadership lost: stop watching and sending now, and write no state. Another
        replica may already lead (or will, once the lease runs out) and has read the last
        checkpoint; a flush from here could land after its read or on top of its own writes
        (the ConfigMap store re-applies a write after a conflict). What the last checkpoint
        does not cover, the new leader sends again; alerts are never lost."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.fleet is not None:
            await self.fleet.reader.close()
        if "delivery" in started:
            await self.delivery.stop(0)  # cancels sends in flight; the spool is not kept
        await self.enricher.close()
        for http in self._https:
            await http.close()
        if "ops" in started and self.ops is not None:
            await self.ops.stop()
        if self.store is not None:
            await self.store.close()

    async def _shutdown(self, tasks: list[asyncio.Task[None]], started: list[str]) -> None:
        log.info("stopping: closing watches, draining alerts, flushing state")
        by_name = {task.get_name(): task for task in tasks}
        # The lease is kept (renewed) until the final checkpoint is saved, then released.
        background = [t for t in tasks if t.get_name() not in ("sender", "lease")]
        await cancel_and_wait(background)
        if self.fleet is not None:
            await self.fleet.reader.close()
        sender = by_name.get("sender")
        if sender is not None and not sender.done():
            # Let alerts already out of aggregation reach the spool (bounded by enrichment's
            # deadline), then save the checkpoint that counts them as done.
            try:
                await asyncio.wait_for(self.commit(), DRAIN_TIMEOUT)
            except TimeoutError:
                log.error("alerts still in flight at shutdown; they are sent again after a restart")
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        elif self.store is not None:
            await self.commit(drain=False)
        if "delivery" in started:
            await self.delivery.stop(DRAIN_TIMEOUT)
        lease = by_name.get("lease")
        if lease is not None and self.elector is not None:
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)
            await self.elector.release()  # a standby takes over at its next read
        await self.enricher.close()
        for http in self._https:
            await http.close()
        if "ops" in started and self.ops is not None:
            await self.ops.stop()
        if self.store is not None:
            await self.store.close()

    async def _restore_aggregation(self) -> None:
        assert self.store is not None
        data = await self.store.load(AGGREGATION_DOCUMENT)
        if data is None:
            return
        try:
            self.pipeline.aggregator.restore(data)
        except ValueError as exc:
            log.error("aggregation state not restored; starting with empty windows", error=str(exc))

    async def _load_committed_mark(self) -> int | None:
        """The emit mark of the last checkpoint (None: there is none): alerts spooled above
        it are re-derived."""
        assert self.store is not None
        data = await self.store.load(COMMIT_DOCUMENT)
        if data is None:
            return None
        try:
            doc = orjson.loads(data)
            mark = doc["mark"] if isinstance(doc, dict) else None
        except orjson.JSONDecodeError:
            mark = None
        if type(mark) is not int or mark < 0:
            log.error("commit record unreadable; spooled alerts above mark 0 are re-derived")
            return 0
        return mark

    async def commit(self, drain: bool = True, delivery_wait: float = HA_DELIVERY_WAIT) -> None:
        """Save the aggregation state, every changed checkpoint and the emit mark they reach,
        as one consistent cut, in one atomic store commit; then let the lanes send the alerts
        it covers.

        The cut is taken under the lock (between objects), then written once every alert up
        to its mark is spooled: a checkpoint never counts an alert that is not on disk, and a
        lane never sends one that a crash could make the event stream yield again. With an
        incremental store the checkpoints are written as the ledger entries that changed,
        and in full only when the store asks (its log outgrew the state, or a write failed).

        HA: the cut is saved only once every alert spooled before it was delivered (waiting up
        to `delivery_wait`), and only while this replica holds the lease. The spool is local
        to a replica; a checkpoint that covered spooled-but-unsent alerts would lose them
        when the leader dies and another continues from it.
        """
        if self.store is None:
            return
        async with self._committing:
            await self._commit(drain, delivery_wait)

    async def _commit(self, drain: bool, delivery_wait: float) -> None:
        assert self.store is not None
        store = self.store
        full = store.incremental and (self._need_full or store.wants_full())
        marks: dict[str, int] = {}
        documents: dict[str, bytes] = {}
        changes: dict[str, bytes] = {}
        async with self.lock:
            if self.pipeline._torn or any(r.torn for r in self._checkpointed()):
                # Cancelled half-way through an object (shutdown): its effect on a ledger
                # or the windows may be without its alerts. The last commit stays; what came
                # after it is re-derived at the next start.
                return
            mark = self.pipeline.emitted
            aggregation = self.pipeline.snapshot(full)
            if aggregation is not None:
                documents[AGGREGATION_DOCUMENT] = aggregation
            for runner in self._checkpointed():
                document, change = runner.take(full)
                if document is not None:
                    documents[runner.checkpoint_id] = document
                if change is not None:
                    changes[runner.checkpoint_id] = change
            if full or mark != self._committed_mark:
                documents[COMMIT_DOCUMENT] = orjson.dumps({"version": 1, "mark": mark})
            if self.elector is not None:
                marks = self.delivery.watermarks()
        if not documents and not changes:
            return
        if self.pipeline.spooled < mark:
            if not drain:
                log.error("alerts still in flight at shutdown; they are sent again after a restart")
                await self._still_dirty(documents, changes)
                return
            await self.pipeline.wait_spooled(mark)
        try:
            if self.elector is not None:
                if not await self._delivered_through(marks, delivery_wait):
                    log.warning("HA: checkpoint waits for alerts still being delivered")
                    await self._still_dirty(documents, changes)
                    return
                if not self.elector.leading():
                    log.warning("HA: not the leader any more; checkpoint not written")
                    return
            # The spools' fsync of the alerts this cut covers (written without one), which
            # must be durable before the cut is: the file store runs it in its own thread
            # trip, just before the record.
            durable_first = await self.delivery.sync_jobs()
            try:
                if isinstance(store, FileStore):
                    await store.save(documents, changes, full=full, before=durable_first)
                else:
                    if durable_first is not None:
                        await asyncio.to_thread(durable_first)
                    await store.save(documents, changes, full=full)
            except asyncio.CancelledError:
                # The write may still finish in its thread, or not: the next commit (the
                # one at shutdown) must not build on it, so it writes everything.
                self._need_full = True
                raise
        except (OSError, ApiError, StateTooLarge) as exc:
            log.error(
                "checkpoint write failed; alerts wait for it, nothing is lost; will retry",
                error=str(exc),
                state=store.describe(),
                waiting_alerts=mark - self._committed_mark,
            )
            self.commits["failed"] += 1
            await self._still_dirty(documents, changes)
            return
        self.commits["written"] += 1
        self._need_full = False
        self._committed_mark = mark
        self.delivery.release(mark)

    async def _still_dirty(
        self, documents: Mapping[str, bytes], changes: Mapping[str, bytes] | None = None
    ) -> None:
        """A cut that was not written: its changes are gone from the ledgers, so the next
        commit of an incremental store writes everything in full."""
        async with self.lock:
            self.pipeline.dirty = self.pipeline.dirty or AGGREGATION_DOCUMENT in documents
            for runner in self._checkpointed():
                if runner.checkpoint_id in documents or runner.checkpoint_id in (changes or {}):
                    runner._dirty = True
            if self.store is not None and self.store.incremental:
                self._need_full = True
        self.pipeline.commit_wanted.set()

    async def _delivered_through(self, marks: Mapping[str, int], timeout: float) -> bool:
        """True once no lane has an alert numbered `marks[lane]` or lower left to send."""
        try:
            await asyncio.wait_for(self.delivery.done_through(marks), timeout)
        except TimeoutError:
            return False
        return True

    async def _commit_loop(self) -> None:
        """Commit as soon as alerts wait for a checkpoint (they go out only once one covers
        them; a commit in progress gathers what comes meanwhile into the next one), else
        every `state.commit_interval` while the watches move on. A store that keeps only
        whole documents (a ConfigMap: one API write each) and HA (whose checkpoint waits for
        delivery instead) commit every interval only. After a failed write, wait the
        interval before trying again."""
        interval = self.loaded.config.state.commit_interval
        wanted = self.pipeline.commit_wanted
        on_demand = self.store is not None and self.store.incremental and self.elector is None
        while True:
            if on_demand:
                await wait_event(wanted, interval)
            else:
                await asyncio.sleep(interval)
            wanted.clear()
            await self.commit()
            if self._need_full:
                await asyncio.sleep(interval)

    async def apply_reload(self, outcome: ReloadOutcome) -> None:
        """SIGHUP: swap what can change live; say what needs a restart. A receiver the new
        config adds gets its lane before any route can name it; a removed one is no longer
        routed to (its lane sends what it holds); a changed one keeps its running settings
        until a restart (its lane, spool and notifier state carry on)."""
        if not outcome.accepted:
            return
        new = outcome.loaded
        types = notifier_types()
        for name, cfg in new.receivers.items():
            if name in self.delivery.lanes or not isinstance(cfg, ReceiverConfig):
                continue
            notifier = build_notifier(cfg, types)
            if notifier.takes_occurrences:
                # The pipeline picks its occurrence publishers when it starts.
                log.warning(
                    "a receiver with records: occurrences added by a reload publishes "
                    "after a restart",
                    receiver=name,
                )
                continue
            try:
                lane = await self.delivery.add(notifier, discard_spool=self.elector is not None)
            except Exception as exc:
                log.error(
                    "config reload not applied: a new receiver could not start; "
                    "keeping the running routes",
                    receiver=name,
                    error=redact(f"{type(exc).__name__}: {exc}"),
                )
                return
            self.notifiers.append(notifier)
            if self._metrics_bound:
                self._bind_lane(name, lane)
            log.info("receiver added", receiver=name, type=cfg.type)
        if outcome.changes.receivers_changed:
            log.warning(
                "receiver settings changed; the running receivers keep theirs until a restart",
                receivers=", ".join(outcome.changes.receivers_changed),
            )
        async with self.lock:
            self.loaded = new
            self.pipeline.filter = EventFilter(new.config.filters)
            self.pipeline.routing = RoutingStage.from_config(
                new.config, previous=self.pipeline.routing
            )
        if "log" in outcome.changes.live:
            configure_logging(new.config.log.level, new.config.log.format)
