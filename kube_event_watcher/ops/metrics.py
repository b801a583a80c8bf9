"""The metric set, read from the stages' plain counters at scrape time.

The hot path never calls prometheus-client: stages keep plain ints (or dicts of ints) as
attributes, and a collector reads them when /metrics is scraped. A stage is bound once:

    metrics.bind("watch_restarts", watch, "reconnects", cluster=c, scope=s)
    metrics.bind("watch_events", watch, "events_by_type", key_label="type", cluster=c, scope=s)

A value may be a number, a mapping of label value -> number (with `key_label`; with a tuple
of key labels, the mapping's keys are tuples in that order), or a callable returning either.
A histogram's value is a `Histogram`: plain bucket counts its owner adds to (`observe`).
Binding checks the label names against the metric's spec so a typo fails at start-up, not
silently at scrape time.
"""

from __future__ import annotations

import importlib.util
import platform
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from kube_event_watcher.ops.eventloop import running_loop_name

Kind = Literal["counter", "gauge", "histogram"]

# Delivery waits: from well under a second (a healthy platform) to an hour (an outage the
# spool rode out).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Histogram:
    """Bucket counts, added to in place on the hot path (no prometheus-client call there)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


Value = (
    float
    | int
    | Histogram
    | Mapping[str, float | int]
    | Mapping[tuple[str, ...], float | int]
    | Mapping[str, Histogram]
)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]


_SPECS = (
    MetricSpec(
        "kew_watch_events_total",
        "counter",
        "Objects received from event watches, by watch event type (ADDED, MODIFIED, ...).",
        ("cluster", "scope", "type"),
    ),
    MetricSpec(
        "kew_occurrences_total",
        "counter",
        "Occurrences (new events or grown series) after normalization.",
        ("cluster",),
    ),
    MetricSpec(
        "kew_filtered_total",
        "counter",
        "Occurrences dropped by filters.",
        ("cluster",),
    ),
    MetricSpec(
        "kew_notifications_total",
        "counter",
        "Notification attempts by receiver and outcome (delivered, retried, failed, ...).",
        ("receiver", "outcome"),
    ),
    MetricSpec(
        "kew_alerts_routed_total",
        "counter",
        "Alerts by routing outcome (routed, muted).",
        ("outcome",),
    ),
    MetricSpec(
        "kew_notify_queue_depth", "gauge", "Alerts waiting in a receiver's queue.", ("receiver",)
    ),
    MetricSpec(
        "kew_notify_spool_bytes",
        "gauge",
        "Size of a receiver's on-disk spool (alerts waiting for the platform to come back).",
        ("receiver",),
    ),
    MetricSpec(
        "kew_fleet_records_total",
        "counter",
        "Occurrence records a fleet's central instance read from its stream, by result "
        "(read, malformed: logged and skipped).",
        ("stream", "result"),
    ),
    MetricSpec(
        "kew_watch_restarts_total",
        "counter",
        "Watch reconnects after an error or a dropped stream.",
        ("cluster", "scope"),
    ),
    MetricSpec(
        "kew_watch_relists_total",
        "counter",
        "Relists because the resourceVersion expired (410 Gone).",
        ("cluster", "scope"),
    ),
    MetricSpec(
        "kew_watch_last_activity_age_seconds",
        "gauge",
        "Seconds since a watch last saw an event, bookmark or successful relist.",
        ("cluster", "scope"),
    ),
    MetricSpec(
        "kew_watch_up",
        "gauge",
        "1 when a watch is established and fresh (within ops.stale_after), else 0.",
        ("cluster", "scope"),
    ),
    MetricSpec(
        "kew_enrichment_cache_requests_total",
        "counter",
        "Enrichment cache lookups by cache and result (hit, miss, negative_hit).",
        ("cache", "result"),
    ),
    MetricSpec(
        "kew_api_requests_total",
        "counter",
        "Requests to the Kubernetes API by cluster and purpose (watch, list, enrich, ...).",
        ("cluster", "purpose"),
    ),
    MetricSpec(
        "kew_aggregation_evictions_total",
        "counter",
        "Aggregation windows or groups evicted to keep memory bounded.",
        ("stage",),
    ),
    MetricSpec(
        "kew_leader",
        "gauge",
        "1 while this replica watches and sends (the Lease holder, or ha off), 0 on standby.",
        (),
    ),
    MetricSpec(
        "kew_checkpoint_commits_total",
        "counter",
        "State commits (checkpoint, aggregation windows, emit mark) by result (written, failed).",
        ("result",),
    ),
    MetricSpec(
        "kew_alerts_awaiting_checkpoint",
        "gauge",
        "Alerts let out by aggregation that wait for a durable checkpoint before they are sent.",
        (),
    ),
    MetricSpec(
        "kew_state_written_bytes_total",
        "counter",
        "Bytes the state store wrote (journal records and full rewrites).",
        (),
    ),
    MetricSpec(
        "kew_detector_findings_total",
        "counter",
        "Pod and Node state detector findings reported, by cluster and reason.",
        ("cluster", "reason"),
    ),
    MetricSpec(
        "kew_object_cache_objects",
        "gauge",
        "Objects held by the watch-backed cache, by cluster and watch scope.",
        ("cluster", "scope"),
    ),
    MetricSpec(
        "kew_config_reloads_total",
        "counter",
        "SIGHUP config reloads by result (applied, rejected).",
        ("result",),
    ),
    MetricSpec(
        "kew_build_info",
        "gauge",
        "Always 1: the running version, Python, whether the hot path is compiled (mypyc), "
        "and the event loop (uvloop, asyncio).",
        ("version", "python", "compiled", "event_loop"),
    ),
    MetricSpec(
        "kew_delivery_latency_seconds",
        "histogram",
        "Seconds from an alert entering a receiver's spool to the platform accepting it.",
        ("receiver",),
    ),
    MetricSpec(
        "kew_notify_oldest_age_seconds",
        "gauge",
        "Seconds the oldest alert waiting for a receiver has waited (0 when none waits).",
        ("receiver",),
    ),
)

METRICS: dict[str, MetricSpec] = {
    spec.name.removeprefix("kew_").removesuffix("_total"): spec for spec in _SPECS
}
"""The metric set by short name (e.g. `events` is not a key: `watch_events` is)."""


def hot_path_compiled() -> bool:
    """Whether the pipeline modules in use are the mypyc-compiled ones (setup.py)."""
    spec = importlib.util.find_spec("kube_event_watcher.pipeline.ledger")
    return spec is not None and spec.origin is not None and not spec.origin.endswith(".py")


def build_labels(version: str, compiled: bool) -> dict[str, str]:
    """`kew_build_info`'s labels for this process."""
    return {
        "version": version,
        "python": platform.python_version(),
        "compiled": "true" if compiled else "false",
        "event_loop": running_loop_name(),
    }


@dataclass(frozen=True, slots=True)
class _Binding:
    owner: object
    read: Callable[[], Value | None]
    labels: dict[str, str]
    key_labels: tuple[str, ...]


class Metrics(Collector):
    """Holds the bindings and renders them; one per process (tests make their own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._bindings: dict[str, list[_Binding]] = {name: [] for name in METRICS}
        self._lock = threading.Lock()
        self.registry.register(self)

    def bind(
        self,
        metric: str,
        source: object,
        attribute: str | Callable[[], Value | None],
        *,
        key_label: str | tuple[str, ...] | None = None,
        **labels: str,
    ) -> None:
        """Read `source.attribute` (or call `attribute()`) into `metric` at each scrape."""
        spec = METRICS.get(metric)
        if spec is None:
            raise ValueError(f"unknown metric {metric!r} (known: {', '.join(sorted(METRICS))})")
        key_labels = (key_label,) if isinstance(key_label, str) else tuple(key_label or ())
        given = (*labels, *key_labels)
        if sorted(given) != sorted(spec.labels):
            raise ValueError(
                f"metric {metric!r} has labels {list(spec.labels)}, bound with {list(given)}"
            )
        if callable(attribute):
            read = attribute
        else:
            if not hasattr(source, attribute):
                raise ValueError(f"{type(source).__name__} has no attribute {attribute!r}")
            name = attribute

            def read() -> Any:
                return getattr(source, name)

        with self._lock:
            self._bindings[metric].append(_Binding(source, read, dict(labels), key_labels))

    def unbind(self, source: object) -> None:
        """Forget every binding of `source` (a stage replaced on reload or restart)."""
        with self._lock:
            for name, bindings in self._bindings.items():
                self._bindings[name] = [b for b in bindings if b.owner is not source]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = {name: list(b) for name, b in self._bindings.items()}
        for name, bindings in snapshot.items():
            spec = METRICS[name]
            if spec.kind == "histogram":
                yield _histogram_family(spec, bindings)
                continue
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.kind == "counter":
                family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
            else:
                family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
            totals: dict[tuple[str, ...], float] = {}
            for binding in bindings:
                for labels, value in _samples(spec, binding):
                    totals[labels] = totals.get(labels, 0.0) + value
            for labels, value in totals.items():
                family.add_metric(list(labels), value)
            yield family

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (text or OpenMetrics, as the scraper asks) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class SharedMetrics(Metrics):
    """Bindings made through it go into `parent` (summed with the others, as bindings of one
    metric are); `release` forgets them all. For a part that comes and goes inside a
    process that serves one /metrics: a shard's daemon (kube_event_watcher.shards)."""

    def __init__(self, parent: Metrics) -> None:  # no registry of its own
        self.parent = parent
        self._sources: list[object] = []

    def bind(
        self,
        metric: str,
        source: object,
        attribute: str | Callable[[], Value | None],
        *,
        key_label: str | tuple[str, ...] | None = None,
        **labels: str,
    ) -> None:
        self.parent.bind(metric, source, attribute, key_label=key_label, **labels)
        self._sources.append(source)

    def unbind(self, source: object) -> None:
        self.parent.unbind(source)

    def release(self) -> None:
        for source in self._sources:
            self.parent.unbind(source)
        self._sources.clear()

    def collect(self) -> Iterator[Metric]:
        return self.parent.collect()

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return self.parent.render(accept)


def _histogram_family(spec: MetricSpec, bindings: list[_Binding]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    merged: dict[tuple[str, ...], tuple[tuple[float, ...], list[int], float]] = {}
    for binding in bindings:
        for labels, histogram in _histograms(spec, binding):
            bounds, counts, total = merged.get(
                labels, (histogram.bounds, [0] * len(histogram.counts), 0.0)
            )
            merged[labels] = (
                bounds,
                [a + b for a, b in zip(counts, histogram.counts, strict=True)],
                total + histogram.sum,
            )
    for labels, (bounds, counts, total) in merged.items():
        cumulative, buckets = 0, []
        for bound, count in zip((*bounds, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", cumulative))
        family.add_metric(list(labels), buckets, total)
    return family


def _values(
    spec: MetricSpec, binding: _Binding
) -> Iterator[tuple[tuple[str, ...], float | int | Histogram]]:
    """Each (label values in the spec's order, value) a binding reads now."""
    value = binding.read()
    if value is None:
        return
    if not isinstance(value, Mapping):
        yield tuple(binding.labels[name] for name in spec.labels), value
        return
    if not binding.key_labels:
        return
    for key, number in value.items():
        keys = key if isinstance(key, tuple) else (key,)
        labels = {**binding.labels, **dict(zip(binding.key_labels, keys, strict=True))}
        yield tuple(str(labels[name]) for name in spec.labels), number


def _histograms(spec: MetricSpec, binding: _Binding) -> Iterator[tuple[tuple[str, ...], Histogram]]:
    for labels, value in _values(spec, binding):
        if isinstance(value, Histogram):
            yield labels, value


def _samples(spec: MetricSpec, binding: _Binding) -> Iterator[tuple[tuple[str, ...], float]]:
    for labels, value in _values(spec, binding):
        if not isinstance(value, Histogram):
            yield labels, float(value)
