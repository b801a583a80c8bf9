"""`kube-event-watcher replay FILE`: what the daemon would have sent for recorded events.

Reads recorded watch lines (`{"type": ..., "object": ...}` per line), events one per line,
or `kubectl get events -o json` output (a List, core/v1 or events.k8s.io/v1), and runs them
through normalize → filter → aggregate with a simulated clock driven by the events' own
timestamps. Operators tune aggregation rules with it; the tests use it too.
"""

from __future__ import annotations

import asyncio
import bisect
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.schema import Config
from kube_event_watcher.kube.wire import DecodeError, convert_event
from kube_event_watcher.notifiers.rendering import alert_record, iso_time
from kube_event_watcher.notifiers.templating import likely_cause_phrase
from kube_event_watcher.pipeline.aggregate import Aggregator, simulate
from kube_event_watcher.pipeline.enrich import Enricher
from kube_event_watcher.pipeline.filtering import EventFilter
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import Alert, Occurrence, RawEvent, members_by_object
from kube_event_watcher.pipeline.normalize import MalformedEvent, Normalizer
from kube_event_watcher.replay_objects import ObjectsInputError, RecordedObjects, read_objects


class ReplayInputError(ValueError):
    """The file is not recorded events in a format replay reads."""


def core_to_events_v1(event: dict[str, Any]) -> dict[str, Any]:
    """A core/v1 Event (what `kubectl get events -o json` prints) in events.k8s.io/v1 shape,
    mapped the way the API server converts them."""
    if "involvedObject" not in event and event.get("apiVersion") != "v1":
        return event
    source = event.get("source") or {}
    converted: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": event.get("metadata") or {},
        "eventTime": event.get("eventTime"),
        "series": event.get("series"),
        "reason": event.get("reason"),
        "type": event.get("type"),
        "action": event.get("action"),
        "note": event.get("message") or "",
        "regarding": event.get("involvedObject") or {},
        "related": event.get("related"),
        "reportingController": event.get("reportingComponent") or source.get("component") or "",
        "reportingInstance": event.get("reportingInstance") or source.get("host") or "",
        "deprecatedSource": source,
        "deprecatedCount": event.get("count"),
        "deprecatedFirstTimestamp": event.get("firstTimestamp"),
        "deprecatedLastTimestamp": event.get("lastTimestamp"),
    }
    return {k: v for k, v in converted.items() if v is not None}


def _event(where: str, obj: dict[str, Any]) -> RawEvent:
    """A recorded event (either API version) as the watch would decode it."""
    try:
        return convert_event(core_to_events_v1(obj))
    except DecodeError as exc:
        raise ReplayInputError(f"{where}: not a usable Event ({exc})") from None


def read_changes(data: bytes) -> Iterator[tuple[str, RawEvent]]:
    """(watch change type, event) pairs in the file's order; a List's items are ADDED."""
    stripped = data.strip()
    if not stripped:
        return
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("items"), list):
        for number, item in enumerate(whole["items"]):
            if isinstance(item, dict):
                yield "ADDED", _event(f"items[{number}]", item)
        return
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ReplayInputError(
                f"line {number}: not JSON ({exc}); expected watch lines "
                '({"type": ..., "object": ...}) or `kubectl get events -o json` output'
            ) from exc
        if not isinstance(doc, dict):
            raise ReplayInputError(f"line {number}: expected a JSON object")
        if "object" in doc and "type" in doc:
            if doc["type"] in ("ADDED", "MODIFIED", "DELETED") and isinstance(doc["object"], dict):
                yield str(doc["type"]), _event(f"line {number}", doc["object"])
            continue  # BOOKMARK, ERROR
        yield "ADDED", _event(f"line {number}", doc)


_SELECTOR_FIELDS: dict[str, Callable[[RawEvent], object]] = {
    "type": lambda e: e.type,
    "reason": lambda e: e.reason,
    "metadata.namespace": lambda e: e.metadata.namespace if e.metadata else None,
    "regarding.kind": lambda e: e.regarding.kind if e.regarding else None,
    "regarding.name": lambda e: e.regarding.name if e.regarding else None,
    "reportingController": lambda e: e.reporting_controller,
}


def selector_passes(selector: str | None, event: RawEvent) -> bool:
    """The source's field selector, applied as the API server would (for `kubectl get
    events` output, which was not recorded with it). Unknown fields pass."""
    if not selector:
        return True
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        name, _, value = term.partition("!=" if negate else "=")
        value = value.lstrip("=")
        getter = _SELECTOR_FIELDS.get(name.strip())
        if getter is None:
            continue
        equal = str(getter(event) or "") == value.strip()
        if equal == negate:
            return False
    return True


@dataclass(frozen=True, slots=True)
class ReplayResult:
    sent: list[tuple[float, Alert]]
    changes: int
    occurrences: int
    dropped: int


def replay(
    config: Config,
    data: bytes,
    cluster: str = "default",
    objects: RecordedObjects | None = None,
) -> ReplayResult:
    """Run recorded events through normalize → filter → aggregate on their own clock, and
    with recorded `objects` enrich each notification from them as they were then."""
    selector = config.sources[0].field_selector if config.sources else None
    normalizer = Normalizer(cluster, SeenLedger())
    event_filter = EventFilter(config.filters)
    timeline: list[tuple[float, Occurrence]] = []
    changes = dropped = 0
    for change, event in read_changes(data):
        changes += 1
        if not selector_passes(selector, event):
            continue
        try:
            occ = normalizer.apply(change, event)
        except MalformedEvent as exc:
            raise ReplayInputError(f"change {changes}: not a usable Event ({exc})") from exc
        if occ is None:
            continue
        if not event_filter.passes(occ):
            dropped += 1
            continue
        timeline.append((occ.last_seen, occ))
    # A List is a snapshot in no particular order; the daemon sorts it by time too.
    timeline.sort(key=lambda pair: pair[0])
    sent = list(simulate(Aggregator(config.aggregation), timeline))
    if objects is not None:
        sent = asyncio.run(_enrich(config, cluster, objects, timeline, sent))
    return ReplayResult(sent, changes, len(timeline) + dropped, dropped)


def _revision(occ: Occurrence) -> int:
    try:
        return int(occ.resource_version)
    except ValueError:
        return 0


async def _enrich(
    config: Config,
    cluster: str,
    objects: RecordedObjects,
    timeline: list[tuple[float, Occurrence]],
    sent: list[tuple[float, Alert]],
) -> list[tuple[float, Alert]]:
    """Each notification enriched from the objects as of the newest Event seen by then (the
    same etcd revision counter), through the daemon's own Enricher and its caches."""
    times = [at for at, _ in timeline]
    newest: list[int] = []
    for _, occ in timeline:
        newest.append(max(_revision(occ), newest[-1] if newest else 0))
    clock = FakeClock(times[0] if times else 0.0)
    settings = config.enrichment.model_copy(update={"enabled": True})

    async def never(_: float) -> None:  # recorded lookups answer at once: no deadline
        await asyncio.Event().wait()

    enricher = Enricher({cluster: objects}, settings, clock, sleep=never)
    enriched: list[tuple[float, Alert]] = []
    try:
        for when, alert in sent:
            seen = bisect.bisect_right(times, when)
            objects.at = newest[seen - 1] if seen else 0
            clock.set_wall(max(clock.now(), when))
            enriched.append((when, await enricher.enrich(alert)))
    finally:
        await enricher.close()
    return enriched


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def describe(alert: Alert) -> str:
    """One line for a notification: what, how many objects and occurrences, since when."""
    if not alert.group_key:
        return f"{alert.regarding.describe()} {alert.reason} x{alert.count}"
    objects = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in alert.objects.items())
    reasons = ", ".join(f"{reason} x{n}" for reason, n in alert.reasons.items())
    news = f", {alert.new_members} new" if alert.new_members and alert.sequence > 1 else ""
    return (
        f"{alert.group_key} #{alert.sequence}: {objects or 'no objects'}{news}, "
        f"{alert.count} occurrences since {_clock(alert.first_seen)} ({reasons})"
    )


TEXT_MEMBERS = 8


def write_text(result: ReplayResult, out: TextIO) -> None:
    for when, alert in result.sent:
        out.write(f"{iso_time(when)}  {alert.status.upper():8} {describe(alert)}\n")
        note = " ".join(alert.note.split())
        if note:
            out.write(f"    {note[:200]}\n")
        cause = likely_cause_phrase(alert, "en")
        if cause:
            out.write(f"    likely cause: {cause[:200]}\n")
        objects = members_by_object(alert.members)
        listed = objects[:TEXT_MEMBERS]
        shown = ", ".join(
            f"{m.regarding.name} ({' '.join(f'{r} x{n}' for r, n in m.reasons)})" for m in listed
        )
        total = sum(alert.objects.values()) or len(objects)
        more = total - len(listed)
        if shown:
            out.write(f"    members: {shown}{f' and {more} more' if more > 0 else ''}\n")
    firing = sum(1 for _, a in result.sent if a.status == "firing")
    out.write(
        f"# {result.changes} changes, {result.occurrences} occurrences "
        f"({result.dropped} dropped by filters) -> {len(result.sent)} notifications "
        f"({firing} firing, {len(result.sent) - firing} resolved)\n"
    )


def write_json(result: ReplayResult, out: TextIO) -> None:
    for when, alert in result.sent:
        out.write(orjson.dumps({"at": iso_time(when), "alert": alert_record(alert)}).decode())
        out.write("\n")


def load_objects(paths: Iterable[str]) -> RecordedObjects:
    """The files given to --objects, in one store (ObjectsInputError, OSError)."""
    objects = RecordedObjects()
    for path in paths:
        with open(path, "rb") as handle:
            objects.add(read_objects(handle.read(), path), path)
    return objects


def run_replay(
    config: Config, path: str, output: str, cluster: str, object_paths: Sequence[str] = ()
) -> int:
    """The CLI command: read `path` ('-' for stdin), print what would be sent."""
    objects = None
    if object_paths:
        try:
            objects = load_objects(object_paths)
        except OSError as exc:
            sys.stderr.write(f"replay: cannot read {exc.filename}: {exc.strerror}\n")
            return 2
        except ObjectsInputError as exc:
            sys.stderr.write(f"replay: {exc}\n")
            return 2
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            sys.stderr.write(f"replay: cannot read {path}: {exc.strerror}\n")
            return 2
    try:
        result = replay(config, data, cluster, objects)
    except ReplayInputError as exc:
        sys.stderr.write(f"replay: {path}: {exc}\n")
        return 2
    (write_json if output == "json" else write_text)(result, sys.stdout)
    return 0
