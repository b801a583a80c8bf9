"""Raw events.k8s.io/v1 Events → Occurrences, deciding with the ledger what is new."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import ObjectRef, Occurrence, RawEvent, RawObjectReference

_F = TypeVar("_F")
_new_tuple = tuple.__new__
_NO_REFERENCE = RawObjectReference()


# Parsed stamps remembered per scope (~100 bytes each); the memo starts over when full.
TIME_MEMO_SIZE = 4096


class MalformedEvent(ValueError):
    """An object that is not a usable Event; logged with its reason and skipped."""


_from_iso = datetime.fromisoformat


def parse_time(value: str) -> float:
    """RFC 3339 (with or without microseconds) to epoch seconds."""
    return _from_iso(value).timestamp()


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
    series = event.series
    if series is not None:
        count = series.count
        if count is not None and count > 0:
            return count
    legacy = event.deprecated_count
    if legacy is not None and legacy > 0:
        return legacy
    return 1


class Normalizer:
    """Turns the watch's changes for one scope into Occurrences.

    `not_before` (epoch seconds) applies on a first start without a checkpoint: older
    events are recorded in the ledger but not reported, so a start does not replay history.
    """

    __slots__ = ("_times", "cluster", "ledger", "not_before")

    def __init__(self, cluster: str, ledger: SeenLedger, not_before: float | None = None) -> None:
        self.cluster = cluster
        self.ledger = ledger
        self.not_before = not_before
        self._times: dict[str | None, float] = {}

    def _parse(self, stamp: str | None, fallback: float) -> float:
        """A stamp's epoch seconds, remembered; `fallback` when it is absent or malformed."""
        value = _time_or(stamp, None)
        if value is None:
            return fallback
        times = self._times
        if len(times) >= TIME_MEMO_SIZE:
            times.clear()
        times[stamp] = value
        return value

    def apply(self, change: str, event: RawEvent) -> Occurrence | None:
        """The occurrence in one ADDED/MODIFIED/DELETED change, or None when nothing new."""
        # Once per event, so one function, written for the interpreter: the count, the
        # ledger's answer and the occurrence in one pass; the decoder checked the types
        # (kube/wire.py), absent fields are None; times parsed only for what is new.
        meta = event.metadata
        if meta is None:
            raise MalformedEvent("no metadata")
        uid = meta.uid
        if not uid:
            raise MalformedEvent("no metadata.uid")
        if change == "DELETED":
            # Events expire by TTL; forgetting keeps the ledger as large as the live set.
            self.ledger.forget(uid)
            return None
        series = event.series
        total = series.count if series is not None else event.deprecated_count
        if total is None or total < 1:
            total = event_count(event)
        new = self.ledger.observe(uid, total)
        if new <= 0:
            return None
        # Stamps repeat (second-precision legacy timestamps within a second, a series'
        # eventTime on each update), so parses are remembered: a dict hit instead of ~0.7 µs.
        times = self._times
        stamp = event.event_time or event.deprecated_first_timestamp or meta.creation_timestamp
        last_stamp = (
            series.last_observed_time if series is not None else None
        ) or event.deprecated_last_timestamp
        first = times.get(stamp) if stamp else None
        if first is None:
            first = self._parse(stamp, 0.0)
        last = first
        if last_stamp:
            known = times.get(last_stamp)
            last = self._parse(last_stamp, first) if known is None else known
        if self.not_before is not None and last < self.not_before:
            return None
        regarding = event.regarding
        if regarding is None:
            regarding = _NO_REFERENCE
        # tuple.__new__ skips the NamedTuples' generated __new__ (a Python function with one
        # argument per field): ~1 µs less per event (bench/RESULTS.md, profile).
        return _new_tuple(
            Occurrence,
            (
                self.cluster,
                uid,
                meta.name or "",
                meta.namespace or "",
                meta.resource_version or "",
                event.type or "Normal",
                event.reason or "",
                event.note or "",
                event.action or "",
                _new_tuple(
                    ObjectRef,
                    (
                        regarding.kind or "",
                        regarding.namespace or "",
                        regarding.name or "",
                        regarding.uid or "",
                        regarding.api_version or "",
                        regarding.field_path or "",
                    ),
                ),
                event.reporting_controller or "",
                event.reporting_instance or "",
                new,
                total,
                first,
                last,
            ),
        )
