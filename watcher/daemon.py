"""The assembly: builds every stage from the config and runs them. The only place that wires
stages together; each stage knows only its own input and output."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from watcher.clock import Clock, SystemClock
from watcher.config.loading import LoadedConfig
from watcher.config.schema import ClusterConfig, SourceConfig
from watcher.kube.client import ApiEndpoint, resolve_endpoint
from watcher.kube.http import KubeHttp
from watcher.kube.watching import EventWatch, Sleep, WatchScope, WatchSettings
from watcher.notifiers.base import Notifier, ReceiverConfig
from watcher.notifiers.delivery import DeliveryStage
from watcher.notifiers.registry import build_notifier, notifier_types
from watcher.pipeline.filtering import EventFilter
from watcher.pipeline.ledger import SeenLedger
from watcher.pipeline.model import Alert, Occurrence
from watcher.pipeline.normalize import MalformedEvent, Normalizer, parse_time
from watcher.state.base import StateStore
from watcher.state.file import FileStore
from watcher.state.memory import MemoryStore

log = structlog.get_logger(__name__)

CHECKPOINT_VERSION = 1
# Sends in flight at SIGTERM get this long to finish; the rest stay spooled (well inside a
# pod's default 30 s grace period, leaving time to flush the checkpoint).
DRAIN_TIMEOUT = 10.0
IMPLICIT_CLUSTER = "default"

Dispatch = Callable[[Occurrence], Awaitable[None]]


@dataclass
class Checkpoint:
    resource_version: str | None
    ledger: SeenLedger

    def to_json(self, scope: WatchScope, saved_at: float) -> bytes:
        return orjson.dumps(
            {
                "version": CHECKPOINT_VERSION,
                "scope": scope.describe(),
                "saved_at": saved_at,
                "resource_version": self.resource_version,
                "ledger": self.ledger._counts,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
            raise ValueError("unknown checkpoint format")
        ledger = SeenLedger.from_json(orjson.dumps(doc.get("ledger") or {}))
        rv = doc.get("resource_version")
        return cls(str(rv) if rv else None, ledger)


class ScopeRunner:
    """Consumes one watch scope: normalize with the ledger, dispatch, checkpoint.

    The checkpoint (resourceVersion + ledger) is written only between objects, never while
    one is being dispatched, so it never claims an occurrence that was not delivered.
    """

    def __init__(
        self,
        scope: WatchScope,
        source: SourceConfig,
        store: StateStore,
        dispatch: Dispatch,
        clock: Clock,
    ) -> None:
        self.scope = scope
        self.source = source
        self.store = store
        self.dispatch = dispatch
        self.clock = clock
        self.checkpoint = Checkpoint(None, SeenLedger())
        self.normalizer = Normalizer(scope.cluster, self.checkpoint.ledger)
        self._listed: set[str] = set()
        self._lock = asyncio.Lock()
        self._dirty = False
        self.last_activity: float | None = None
        self.log = log.bind(cluster=scope.cluster, namespace=scope.namespace or "*")

    async def load(self) -> str | None:
        """Restore the checkpoint; on a first start, skip what happened before start."""
        data = await self.store.load(self.scope.id)
        if data is not None:
            try:
                self.checkpoint = Checkpoint.from_json(data)
            except (ValueError, orjson.JSONDecodeError) as exc:
                self.log.error("checkpoint unreadable, starting afresh", error=str(exc))
                data = None
        if data is None:
            self.normalizer = Normalizer(
                self.scope.cluster,
                self.checkpoint.ledger,
                not_before=self.clock.now() - self.source.startup_max_age,
            )
            self.log.info(
                "first start: skipping events from before now",
                max_age_seconds=self.source.startup_max_age,
            )
        else:
            self.normalizer = Normalizer(self.scope.cluster, self.checkpoint.ledger)
            self.log.info(
                "resuming from checkpoint",
                resource_version=self.checkpoint.resource_version,
                known_events=len(self.checkpoint.ledger),
            )
        return self.checkpoint.resource_version

    async def _process(self, change: str, event: dict[str, Any]) -> None:
        try:
            occurrence = self.normalizer.apply(change, event)  # type: ignore[arg-type]
        except MalformedEvent as exc:
            meta = event.get("metadata") if isinstance(event, dict) else None
            self.log.error(
                "malformed event skipped",
                reason=str(exc),
                event=(meta or {}).get("name", "?") if isinstance(meta, dict) else "?",
            )
            return
        if occurrence is not None:
            await self.dispatch(occurrence)

    # -- WatchConsumer ------------------------------------------------------------------------

    async def on_list_start(self) -> None:
        self._listed = set()

    async def on_listed(self, events: list[dict[str, Any]], resource_version: str) -> None:
        async with self._lock:
            for event in sorted(events, key=_event_time):
                uid = (event.get("metadata") or {}).get("uid")
                if uid:
                    self._listed.add(uid)
                await self._process("ADDED", event)
            self._dirty = True

    async def on_list_done(self, resource_version: str) -> None:
        async with self._lock:
            dropped = self.checkpoint.ledger.retain_only(self._listed)
            self._listed = set()
            self.checkpoint.resource_version = resource_version
            self.normalizer.not_before = None
            self._dirty = True
            self.last_activity = self.clock.monotonic()
        # Checkpoint at once: a crash before the first periodic commit would otherwise make
        # the next start a "first start" that skips what happened while we were down.
        await self.commit()
        self.log.info(
            "listed",
            resource_version=resource_version,
            known_events=len(self.checkpoint.ledger),
            expired=dropped,
        )

    async def on_change(self, change: str, event: dict[str, Any], resource_version: str) -> None:
        async with self._lock:
            await self._process(change, event)
            self.checkpoint.resource_version = resource_version
            self._dirty = True
            self.last_activity = self.clock.monotonic()

    async def on_bookmark(self, resource_version: str) -> None:
        async with self._lock:
            self.checkpoint.resource_version = resource_version
            self._dirty = True
            self.last_activity = self.clock.monotonic()

    async def on_watch_open(self, resource_version: str) -> None:
        self.last_activity = self.clock.monotonic()

    # -- checkpoint ---------------------------------------------------------------------------

    async def commit(self) -> None:
        async with self._lock:
            if not self._dirty:
                return
            data = self.checkpoint.to_json(self.scope, self.clock.now())
            self._dirty = False
        await self.store.save({self.scope.id: data})


def _event_time(event: dict[str, Any]) -> float:
    series = event.get("series") or {}
    stamp = (
        series.get("lastObservedTime")
        or event.get("deprecatedLastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
    )
    try:
        return parse_time(stamp) if isinstance(stamp, str) else 0.0
    except ValueError:
        return 0.0


class Dispatcher:
    """filter → alert → the delivery stage, once per receiver (routing and aggregation come
    in their own stages). `submit` returns once the alert is spooled on disk, so nothing is
    checkpointed as done before it is safe."""

    def __init__(
        self, event_filter: EventFilter, delivery: DeliveryStage, receivers: list[str]
    ) -> None:
        self.filter = event_filter
        self.delivery = delivery
        self.receivers = receivers
        self.dropped = 0
        self.dispatched = 0

    async def __call__(self, occurrence: Occurrence) -> None:
        if not self.filter.passes(occurrence):
            self.dropped += 1
            return
        alert = Alert.from_occurrence(occurrence)
        for receiver in self.receivers:
            await self.delivery.submit(receiver, alert)
        self.dispatched += 1


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


def make_store(loaded: LoadedConfig) -> StateStore:
    state = loaded.config.state
    if state.backend == "memory":
        return MemoryStore()
    return FileStore(state.path)


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
    ) -> None:
        self.loaded = loaded
        self._sleep = sleep or asyncio.sleep
        self._settings = settings
        self.kubeconfig = kubeconfig
        self.context = context
        self.clock = clock or SystemClock()
        self.store = store or make_store(loaded)
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
        self.env = env if env is not None else os.environ
        self.delivery = DeliveryStage(
            self.notifiers,
            spool_dir or Path(loaded.config.state.path).expanduser() / "spool",
            clock=self.clock,
        )
        self.dispatcher = Dispatcher(
            EventFilter(loaded.config.filters),
            self.delivery,
            [n.name for n in self.notifiers],
        )
        self.runners: list[ScopeRunner] = []
        self.watches: list[EventWatch] = []
        self._https: list[KubeHttp] = []
        self.ready = asyncio.Event()

    async def _endpoints(self) -> list[ApiEndpoint]:
        clusters = self.loaded.config.clusters or [ClusterConfig(name=IMPLICIT_CLUSTER)]
        return [
            await resolve_endpoint(c, self.kubeconfig, self.context, self.env) for c in clusters
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await self.delivery.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            for endpoint in await self._endpoints():
                http = KubeHttp(endpoint)
                self._https.append(http)
                log.info(
                    "cluster",
                    cluster=endpoint.cluster,
                    server=endpoint.server,
                    auth=endpoint.auth_method,
                    origin="; ".join(endpoint.origin),
                )
                for scope, source in watch_scopes(endpoint.cluster, self.loaded.config.sources):
                    runner = ScopeRunner(scope, source, self.store, self.dispatcher, self.clock)
                    rv = await runner.load()
                    watch = EventWatch(
                        http,
                        scope,
                        runner,
                        self._settings or watch_settings(source),
                        rv,
                        sleep=self._sleep,
                    )
                    self.runners.append(runner)
                    self.watches.append(watch)
                    tasks.append(asyncio.create_task(watch.run(), name=scope.id))
            committer = asyncio.create_task(self._commit_loop(stop), name="checkpoint")
            self.ready.set()
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([stopped, committer, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in [*tasks, committer, stopped]:
                if task.done() and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            log.info("stopping: closing watches and flushing state")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if "committer" in locals():
                committer.cancel()
                await asyncio.gather(committer, return_exceptions=True)
            await self.commit()
            await self.delivery.stop(DRAIN_TIMEOUT)
            for http in self._https:
                await http.close()
            await self.store.close()

    async def commit(self) -> None:
        for runner in self.runners:
            try:
                await runner.commit()
            except OSError as exc:
                log.error(
                    "checkpoint write failed; will retry", scope=runner.scope.id, error=str(exc)
                )

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        interval = self.loaded.config.state.commit_interval
        while not stop.is_set():
            await asyncio.sleep(interval)
            await self.commit()
