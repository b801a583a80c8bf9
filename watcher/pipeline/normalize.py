"""Raw events.k8s.io/v1 Events → Occurrences, deciding with the ledger what is new."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar, cast

from watcher.pipeline.ledger import SeenLedger
from watcher.pipeline.model import ObjectRef, Occurrence, RawEvent, RawObjectMeta

_F = TypeVar("_F")
_new_tuple = tuple.__new__


class MalformedEvent(ValueError):
    """An object that is not a usable Event; logged with its reason and skipped."""


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
        if type(count) is int and count > 0:
            return count
    legacy = event.get("deprecatedCount")
    if type(legacy) is int and legacy > 0:
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
        try:
            uid = meta["uid"]  # type: ignore[index]
        except (TypeError, KeyError):
            raise MalformedEvent("no metadata" if meta is None else "no metadata.uid") from None
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
        return self._occurrence(event, meta, uid, new, total)  # type: ignore[arg-type]

    def _occurrence(
        self, event: RawEvent, meta: RawObjectMeta, uid: str, new: int, total: int
    ) -> Occurrence | None:
        # Trust the API's types here (this runs per event); only absent fields get defaults.
        get = cast(dict[str, Any], event).get
        series = get("series")
        stamp = get("eventTime") or get("deprecatedFirstTimestamp") or meta.get("creationTimestamp")
        first = _time_or(stamp, 0.0)
        last_stamp = (series and series.get("lastObservedTime")) or get("deprecatedLastTimestamp")
        last = _time_or(last_stamp, first) if last_stamp else first
        if self.not_before is not None and last < self.not_before:
            return None
        regarding = get("regarding")
        if regarding is None:
            regarding = {}
        elif not isinstance(regarding, dict):
            raise MalformedEvent("regarding is not an object reference")
        rget = regarding.get
        # tuple.__new__ skips the NamedTuples' generated __new__ (a Python function with one
        # argument per field): ~1 µs less per event (bench/RESULTS.md, profile).
        return _new_tuple(
            Occurrence,
            (
                self.cluster,
                uid,
                meta.get("name", ""),
                meta.get("namespace", ""),
                meta.get("resourceVersion", ""),
                get("type") or "Normal",
                get("reason") or "",
                get("note") or "",
                get("action") or "",
                _new_tuple(
                    ObjectRef,
                    (
                        rget("kind", ""),
                        rget("namespace", ""),
                        rget("name", ""),
                        rget("uid", ""),
                        rget("apiVersion", ""),
                        rget("fieldPath", ""),
                    ),
                ),
                get("reportingController") or "",
                get("reportingInstance") or "",
                new,
                total,
                first,
                last,
            ),
        )
