"""Raw events.k8s.io/v1 Events → Occurrences, deciding with the ledger what is new."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from watcher.pipeline.ledger import SeenLedger
from watcher.pipeline.model import ObjectRef, Occurrence, RawEvent

_F = TypeVar("_F")


class MalformedEvent(ValueError):
    """An object that is not a usable Event; logged with its reason and skipped."""


@lru_cache(maxsize=4096)
def parse_time(value: str) -> float:
    """RFC 3339 (with or without microseconds) to epoch seconds."""
    return datetime.fromisoformat(value).timestamp()


def _time_or(value: object, fallback: _F) -> float | _F:
    if isinstance(value, str) and value:
        try:
            return parse_time(value)
        except ValueError:
            return fallback
    return fallback


def event_count(event: RawEvent) -> int:
    """How many times the event has happened: series.count, or deprecatedCount for events
    from legacy (core/v1) recorders, or 1."""
    series = event.get("series")
    if series:
        count = series.get("count")
        if isinstance(count, int) and count > 0:
            return count
    legacy = event.get("deprecatedCount")
    if isinstance(legacy, int) and legacy > 0:
        return legacy
    return 1


class Normalizer:
    """Turns the watch's changes for one scope into Occurrences.

    `not_before` (epoch seconds) applies on a first start without a checkpoint: older
    events are recorded in the ledger but not reported, so a start does not replay history.
    """

    __slots__ = ("cluster", "ledger", "not_before")

    def __init__(self, cluster: str, ledger: SeenLedger, not_before: float | None = None) -> None:
        self.cluster = cluster
        self.ledger = ledger
        self.not_before = not_before

    def apply(self, change: str, event: RawEvent) -> Occurrence | None:
        """The occurrence in one ADDED/MODIFIED/DELETED change, or None when nothing new."""
        meta = event.get("metadata")
        if not isinstance(meta, dict):
            raise MalformedEvent("no metadata")
        uid = meta.get("uid")
        if not uid or not isinstance(uid, str):
            raise MalformedEvent("no metadata.uid")
        if change == "DELETED":
            # Events expire by TTL; forgetting keeps the ledger as large as the live set.
            self.ledger.forget(uid)
            return None
        total = event_count(event)
        new = self.ledger.observe(uid, total)
        if new <= 0:
            return None
        return self._occurrence(event, meta, uid, new, total)

    def _occurrence(
        self, event: RawEvent, meta: dict[str, str] | object, uid: str, new: int, total: int
    ) -> Occurrence | None:
        assert isinstance(meta, dict)
        created = _time_or(meta.get("creationTimestamp"), 0.0)
        first = _time_or(event.get("eventTime") or event.get("deprecatedFirstTimestamp"), created)
        series = event.get("series") or {}
        last = _time_or(
            series.get("lastObservedTime") or event.get("deprecatedLastTimestamp"), first
        )
        if self.not_before is not None and last < self.not_before:
            return None
        regarding = event.get("regarding") or {}
        if not isinstance(regarding, dict):
            raise MalformedEvent("regarding is not an object reference")
        return Occurrence(
            cluster=self.cluster,
            uid=uid,
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            type=str(event.get("type") or "Normal"),
            reason=str(event.get("reason") or ""),
            note=str(event.get("note") or ""),
            action=str(event.get("action") or ""),
            regarding=ObjectRef(
                kind=str(regarding.get("kind", "")),
                namespace=str(regarding.get("namespace", "")),
                name=str(regarding.get("name", "")),
                uid=str(regarding.get("uid", "")),
                api_version=str(regarding.get("apiVersion", "")),
                field_path=str(regarding.get("fieldPath", "")),
            ),
            reporting_controller=str(event.get("reportingController") or ""),
            reporting_instance=str(event.get("reportingInstance") or ""),
            count=new,
            total=total,
            first_seen=first,
            last_seen=last,
        )
