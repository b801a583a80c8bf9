"""`kube-event-watcher replay FILE`: what the daemon would have sent for recorded events.

Reads recorded watch lines (`{"type": ..., "object": ...}` per line), Events one per line
or in a JSON array, or `kubectl get events -o json` output (a List, core/v1 or
events.k8s.io/v1), from a file or standard input, and runs them
through normalize → filter → aggregate with a simulated clock driven by the events' own
timestamps. A malformed entry is reported with its position and skipped. Operators tune
aggregation rules with it; the tests use it too.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.schema import Config
from kube_event_watcher.kube.wire import DecodeError, convert_event
from kube_event_watcher.notifiers.rendering import alert_record, iso_time
from kube_event_watcher.notifiers.templating import likely_cause_phrase
from kube_event_watcher.ops.eventloop import run as run_on_loop
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


_EXPECTED_INPUT = (
    "expected Events (JSON lines, a JSON array, or `kubectl get events -o json`) or watch lines "
    '({"type": ..., "object": ...})'
)


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded change: where it is in the input, its watch type, the event."""

    where: str
    change: str
    event: RawEvent


def _record(where: str, doc: object) -> Iterator[Change]:
    """The change one JSON value holds: a watch event, or an Event (ADDED)."""
    if not isinstance(doc, dict):
        raise ReplayInputError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    if "object" in doc and "type" in doc:
        if doc["type"] not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK (a resourceVersion only), ERROR (a Status): no event in them
        if not isinstance(doc["object"], dict):
            raise ReplayInputError(f"{where}: the watch event's object is not a JSON object")
        yield Change(where, str(doc["type"]), _event(where, doc["object"]))
        return
    yield Change(where, "ADDED", _event(where, doc))


# Where reading resumes after a value that does not parse: the next line that starts with
# something other than indentation or a closing bracket (a pretty-printed value's own lines).
_NEXT_START = re.compile(r"\n(?=[^\s}\]])")


def _documents(text: str) -> Iterator[tuple[str, object]]:
    """(position, value) for each JSON value in `text`: JSON lines, or pretty-printed
    values one after another (`kubectl get events -w -o json`). A value that does not
    parse is reported at its line, and reading goes on at the next line that may start one."""
    decoder = json.JSONDecoder()
    pos, end = 0, len(text)
    line, counted = 1, 0  # the line number of `counted`, counted as reading goes on
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            after = _NEXT_START.search(text, pos)
            resume = after.end() if after else end
            yield (
                f"line {line}",
                ReplayInputError(
                    f"line {line}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                    + _EXPECTED_INPUT
                ),
            )
            pos = resume
            continue
        yield f"line {line}", value


def read_changes(data: bytes) -> Iterator[Change | ReplayInputError]:
    """The input's changes in its order (a List's or an array's items are ADDED), and in
    their place a ReplayInputError for each one that is malformed (the caller reports and
    skips it). Reads JSON lines of Events or of watch events, a JSON array of either, and a
    List (`kubectl get events -o json`, core/v1 or events.k8s.io/v1)."""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (editors on Windows) is not JSON
    except UnicodeDecodeError as exc:
        yield ReplayInputError(f"byte {exc.start}: not UTF-8 text; " + _EXPECTED_INPUT)
        return
    for where, value in _documents(text):
        if isinstance(value, ReplayInputError):
            yield value
            continue
        items: list[tuple[str, object]]
        if isinstance(value, dict) and isinstance(value.get("items"), list):
            items = [(f"{where}: items[{i}]", item) for i, item in enumerate(value["items"])]
        elif isinstance(value, list):
            items = [(f"{where}: [{i}]", item) for i, item in enumerate(value)]
        else:
            items = [(where, value)]
        for position, item in items:
            try:
                yield from _record(position, item)
            except ReplayInputError as exc:
                yield exc


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
    skipped: list[str] = field(default_factory=list)
    """One line per malformed entry of the input (where it is, what is wrong), skipped."""


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
    skipped: list[str] = []
    for read in read_changes(data):
        if isinstance(read, ReplayInputError):
            skipped.append(str(read))
            continue
        if read.event.metadata is None or not read.event.metadata.uid:
            # Checked before the selector, which would drop it unreported.
            skipped.append(f"{read.where}: not a usable Event (no metadata.uid)")
            continue
        changes += 1
        if not selector_passes(selector, read.event):
            continue
        try:
            occ = normalizer.apply(read.change, read.event)
        except MalformedEvent as exc:
            skipped.append(f"{read.where}: not a usable Event ({exc})")
            continue
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
        sent = run_on_loop(_enrich(config, cluster, objects, timeline, sent))
    return ReplayResult(sent, changes, len(timeline) + dropped, dropped, skipped)


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
        f"({result.dropped} dropped by filters"
        f"{f', {len(result.skipped)} malformed skipped' if result.skipped else ''}) "
        f"-> {len(result.sent)} notifications "
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
    name = "(stdin)" if path == "-" else path
    result = replay(config, data, cluster, objects)
    for problem in result.skipped:
        sys.stderr.write(f"replay: {name}: {problem}; skipped\n")
    if result.skipped and not result.changes:
        sys.stderr.write(f"replay: {name}: no usable event in it; {_EXPECTED_INPUT}\n")
        return 2
    (write_json if output == "json" else write_text)(result, sys.stdout)
    return 0
