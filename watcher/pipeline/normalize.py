"""Raw events.k8s.io/v1 Events → Occurrences, deciding with the ledger what is new."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from watcher.pipeline.ledger import SeenLedger
from watcher.pipeline.model import ObjectRef, Occurrence, RawEvent

_F = TypeVar("_F")
_new_tuple = tuple.__new__


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

    __slots__ = ("_times", "cluster", "ledger", "not_before")

    def __init__(self, cluster: str, ledger: SeenLedger, not_before: float | None = None) -> None:
        self.cluster = cluster
        self.ledger = ledger
        self.not_before = not_before
        self._times: dict[Any, float] = {}

    def _parse(self, stamp: object, fallback: float) -> float:
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
        # ledger's answer and the occurrence in one pass, trusting the API's types (only
        # absent fields get defaults), times parsed only for what is new.
        # Annotations, not typing.cast(): a cast is a function call at run time.
        # `meta` is Any, not dict: compiled (mypyc), a dict annotation is checked on
        # assignment and a null metadata would be a TypeError, not a MalformedEvent.
        get: Callable[[str], Any] = event.get
        meta: Any = get("metadata")  # checked by the lookup below
        try:
            uid = meta["uid"]
        except (TypeError, KeyError):
            raise MalformedEvent("no metadata" if meta is None else "no metadata.uid") from None
        if not uid or type(uid) is not str:
            raise MalformedEvent("no metadata.uid")
        if change == "DELETED":
            # Events expire by TTL; forgetting keeps the ledger as large as the live set.
            self.ledger.forget(uid)
            return None
        series = get("series")
        total = series.get("count") if series else get("deprecatedCount")
        if type(total) is not int or total < 1:
            total = event_count(event)
        new = self.ledger.observe(uid, total)
        if new <= 0:
            return None
        # Stamps repeat (second-precision legacy timestamps within a second, a series'
        # eventTime on each update), so parses are remembered: a dict hit instead of ~0.7 µs.
        times = self._times
        stamp = get("eventTime") or get("deprecatedFirstTimestamp") or meta.get("creationTimestamp")
        last_stamp = (series and series.get("lastObservedTime")) or get("deprecatedLastTimestamp")
        try:
            first = times.get(stamp)
            if first is None:
                first = self._parse(stamp, 0.0)
            last = first
            if last_stamp:
                known = times.get(last_stamp)
                last = self._parse(last_stamp, first) if known is None else known
        except TypeError:  # an unhashable "stamp" (a list, an object) is no time at all
            first = last = 0.0
        if self.not_before is not None and last < self.not_before:
            return None
        regarding = get("regarding")
        if regarding is None:
            regarding = {}
        elif type(regarding) is not dict:
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
