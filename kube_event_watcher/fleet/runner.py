"""The central instance's intake: occurrence records read from a stream (Kafka, NATS
JetStream), handed to the pipeline as if this instance had watched them itself.

Exactly once: the stream position (per Kafka partition the next offset; for NATS the next
stream sequence) is part of the daemon's checkpoint, the same cut as the aggregation state
and the emit mark. A restart reads on from the last checkpoint's position, so what it reads
again is exactly what the lost state had counted; the lanes send nothing the checkpoint does
not cover. Repeats on the stream itself are the edge's to prevent (its Kafka receiver's
offset ledger, NATS `Nats-Msg-Id`), and the edges number occurrences alike across restarts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NamedTuple, Protocol

import orjson
import structlog

from kube_event_watcher.backoff import Backoff
from kube_event_watcher.clock import Clock
from kube_event_watcher.notifiers.stream import MalformedRecord, occurrence_from_message
from kube_event_watcher.ops.health import WatchStatus
from kube_event_watcher.pipeline.model import ObjectRef, Occurrence
from kube_event_watcher.state.base import StateStore

log = structlog.get_logger(__name__)

CHECKPOINT_VERSION = 1


class StreamRecord(NamedTuple):
    part: str  # a Kafka partition's number; "seq" for a NATS stream
    offset: int
    body: bytes


class StreamBatch(NamedTuple):
    records: list[StreamRecord]
    # Where each part (newly) starts, before any record of it was read: saved at once, so
    # a restart before the first record does not look the start up again by time.
    starts: dict[str, int]


class StreamReader(Protocol):
    """One engine's reading of the occurrence stream (fleet/kafka.py, fleet/nats.py)."""

    name: str  # e.g. "kafka:kew-occurrences": names the checkpoint, the logs and metrics

    def batches(
        self, positions: Mapping[str, int], start_time: float
    ) -> AsyncIterator[StreamBatch]:
        """Records from `positions` (each part's next offset) on; a part without one from
        the first record at or after `start_time` (epoch seconds). Reconnects by itself,
        always from the positions as they are then (the caller advances them)."""
        ...

    async def probe(self) -> str:
        """Connect, look the stream up, read nothing: what was found (for `doctor`); raises
        what went wrong."""
        ...

    async def close(self) -> None: ...


class Outage:
    """A reader's reconnect bookkeeping: the delay before each try, and each problem logged
    once (not once a try) until it changes or the stream is read again."""

    def __init__(self, log: Any, what: str, backoff: Backoff) -> None:
        self.log = log
        self.what = what
        self.backoff = backoff
        self.failures = 0
        self._last = ""

    def failed(self, problem: str, **fields: Any) -> float:
        self.failures += 1
        delay = self.backoff.delay(self.failures)
        if problem != self._last:
            self.log.error(
                f"cannot read the {self.what}; retrying",
                error=problem,
                retry_in=round(delay, 1),
                **fields,
            )
            self._last = problem
        return delay

    def recovered(self) -> int | None:
        """How many tries failed before this one (None: none); the count starts over."""
        failures, self.failures, self._last = self.failures, 0, ""
        return failures or None


def checkpoint_name(reader_name: str) -> str:
    return "fleet-" + re.sub(r"[^A-Za-z0-9._-]", "_", reader_name)


class FleetRunner:
    """Reads the stream into the pipeline's intake, under the daemon's lock per batch (a
    checkpoint is taken between batches, never inside one)."""

    def __init__(
        self,
        reader: StreamReader,
        store: StateStore,
        intake: Callable[[Occurrence], Awaitable[None]],
        clock: Clock,
        lock: Any,
        startup_max_age: float,
        remember_facts: Callable[[str, ObjectRef, Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.reader = reader
        self.remember_facts = remember_facts  # the edge's facts, for the enricher
        self.store = store
        self.intake = intake
        self.clock = clock
        self._lock = lock
        self.startup_max_age = startup_max_age
        self.checkpoint_id = checkpoint_name(reader.name)
        self.positions: dict[str, int] = {}
        self.start_time = 0.0
        self._dirty = False
        self._torn = False
        self.established = False
        self.last_activity: float | None = None
        # Plain counters for the metrics: records read, by outcome.
        self.records: dict[str, int] = {"read": 0, "malformed": 0}
        self.log = log.bind(stream=reader.name)

    async def load(self) -> None:
        data = await self.store.load(self.checkpoint_id)
        if data is not None:
            try:
                doc = orjson.loads(data)
                self.positions = _positions(doc)
                self.start_time = float(doc["start_time"])
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
                self.log.error("fleet checkpoint unreadable, starting afresh", error=str(exc))
            else:
                self.log.info("resuming the occurrence stream", positions=self.positions)
                return
        self.start_time = self.clock.now() - self.startup_max_age
        self._dirty = True  # the start time is saved before anything is read
        self.log.info(
            "first start: reading occurrences published from now on"
            if self.startup_max_age == 0
            else "first start: reading occurrences published since the start-up age limit",
            max_age_seconds=self.startup_max_age,
        )

    async def run(self) -> None:
        # The reader yields an empty batch after each quiet poll: the stream is alive (the
        # ops layer judges staleness by `last_activity`, as for a watch's bookmarks).
        async for batch in self.reader.batches(self.positions, self.start_time):
            self.established = True
            self.last_activity = self.clock.monotonic()
            if not batch.records and not batch.starts:
                continue
            async with self._lock:
                self._torn = True
                for part, offset in batch.starts.items():
                    self.positions.setdefault(part, offset)
                for record in batch.records:
                    await self._process(record)
                    self.positions[record.part] = record.offset + 1
                self._dirty = True
                self._torn = False

    async def _process(self, record: StreamRecord) -> None:
        self.records["read"] += 1
        try:
            occurrence, facts = occurrence_from_message(record.body)
        except MalformedRecord as exc:
            self.records["malformed"] += 1
            self.log.error(
                "malformed occurrence record skipped",
                part=record.part,
                offset=record.offset,
                reason=str(exc),
            )
            return
        if facts and self.remember_facts is not None:
            self.remember_facts(occurrence.cluster, occurrence.regarding, facts)
        await self.intake(occurrence)

    # -- the daemon's checkpoint -------------------------------------------------------------

    @property
    def torn(self) -> bool:
        return self._torn

    def take(self, full: bool) -> tuple[bytes | None, bytes | None]:
        """The position document when it moved (always with `full`): small, so always whole."""
        if self._torn or not (self._dirty or full):
            return None, None
        self._dirty = False
        return (
            orjson.dumps(
                {
                    "version": CHECKPOINT_VERSION,
                    "stream": self.reader.name,
                    "saved_at": self.clock.now(),
                    "start_time": self.start_time,
                    "positions": self.positions,
                }
            ),
            None,
        )

    def status(self) -> WatchStatus:
        return WatchStatus(
            name=self.checkpoint_id,
            cluster="fleet",
            namespace=None,
            scope=self.reader.name,
            established=self.established,
            last_activity=self.last_activity,
        )


def _positions(doc: Any) -> dict[str, int]:
    if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
        raise ValueError("unknown fleet checkpoint format")
    positions = doc.get("positions")
    if not isinstance(positions, dict) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in positions.items()
    ):
        raise ValueError("fleet checkpoint positions are damaged")
    return dict(positions)
