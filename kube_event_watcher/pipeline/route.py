"""Routing: which receivers get an alert, and whether a silence or an inhibition mutes it.

In the manner of Alertmanager (dispatch/route.go, inhibit/, silence/): a tree of routes whose
matchers read the alert's fields, labels and enriched facts; `continue` lets an alert go on to
later siblings; the deepest matching routes win, the root's receiver is the default. Pure:
every decision takes `now` (epoch seconds) and does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kube_event_watcher.config.routing import (
    InhibitRuleConfig,
    MatcherSpec,
    RouteConfig,
    SilenceConfig,
    WeeklyWindow,
)
from kube_event_watcher.config.schema import Config
from kube_event_watcher.pipeline.model import Alert

FieldGetter = Callable[[Alert], str]


def _text(value: Any) -> str:
    """A fact as matchers see it: scalars as text, absent or structured values as ''."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fact(path: tuple[str, ...]) -> FieldGetter:
    def get(alert: Alert) -> str:
        node: Any = alert.facts
        for part in path:
            if not isinstance(node, Mapping):
                return ""
            node = node.get(part)
        return _text(node)

    return get


def _reporting_controller(alert: Alert) -> str:
    return alert.occurrences[0].reporting_controller if alert.occurrences else ""


_PLAIN_GETTERS: dict[str, FieldGetter] = {
    "cluster": lambda a: a.cluster,
    "namespace": lambda a: a.namespace or a.regarding.namespace,
    "kind": lambda a: a.regarding.kind,
    "name": lambda a: a.regarding.name,
    "reason": lambda a: a.reason,
    "type": lambda a: a.type,
    "status": lambda a: a.status,
    "reporting_controller": _reporting_controller,
    "note": lambda a: a.note,
}


def field_getter(name: str) -> FieldGetter:
    """The reader for a matcher field: a plain field, `labels.<key>` or `facts.<a.b.c>`."""
    if name in _PLAIN_GETTERS:
        return _PLAIN_GETTERS[name]
    if name.startswith("labels."):
        key = name.removeprefix("labels.")
        return lambda a: a.labels.get(key, "")
    if name.startswith("facts."):
        return _fact(tuple(name.removeprefix("facts.").split(".")))
    raise ValueError(f"unknown matcher field {name!r}")


@dataclass(frozen=True, slots=True)
class FieldMatcher:
    """One compiled matcher. A missing label or fact reads as '' (as in Alertmanager), so
    `labels.team!="pay"` matches alerts without a team label."""

    spec: MatcherSpec
    get: FieldGetter
    pattern: re.Pattern[str] | None

    @classmethod
    def compile(cls, spec: MatcherSpec) -> FieldMatcher:
        pattern = re.compile(spec.value) if spec.op in ("=~", "!~") else None
        return cls(spec, field_getter(spec.field), pattern)

    def matches(self, alert: Alert) -> bool:
        value = self.get(alert)
        if self.pattern is None:
            return (value == self.spec.value) == (self.spec.op == "=")
        return (self.pattern.fullmatch(value) is not None) == (self.spec.op == "=~")


def compile_matchers(specs: Iterable[MatcherSpec]) -> tuple[FieldMatcher, ...]:
    return tuple(FieldMatcher.compile(s) for s in specs)


def all_match(matchers: Sequence[FieldMatcher], alert: Alert) -> bool:
    # A plain loop: all() over a generator costs ~0.5 µs more per call, and this runs for
    # every route, silence and inhibition rule on every alert.
    for matcher in matchers:  # noqa: SIM110
        if not matcher.matches(alert):
            return False
    return True


# --- the route tree ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    receiver: str
    matchers: tuple[FieldMatcher, ...]
    continue_: bool
    routes: tuple[Route, ...]
    path: str

    @classmethod
    def from_config(
        cls, config: RouteConfig, parent_receiver: str = "", path: str = "routes"
    ) -> Route:
        receiver = config.receiver or parent_receiver
        children = tuple(
            cls.from_config(child, receiver, f"{path}.routes[{i}]")
            for i, child in enumerate(config.routes)
        )
        return cls(
            receiver, compile_matchers(config.all_matchers()), config.continue_, children, path
        )

    def match(self, alert: Alert) -> list[Route]:
        """The routes that take `alert` (Alertmanager's Route.Match): deepest matches first
        come from children in order; a child without `continue` stops its later siblings."""
        if not all_match(self.matchers, alert):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(alert)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]


class Router:
    """The route tree; without `routes:` in the config, every receiver gets every alert."""

    def __init__(self, config: RouteConfig | None, receivers: Sequence[str]) -> None:
        self.root = Route.from_config(config) if config is not None else None
        self._everyone = tuple(receivers)

    def receivers(self, alert: Alert) -> tuple[str, ...]:
        if self.root is None:
            return self._everyone
        routes = self.root.match(alert)
        if len(routes) == 1:
            return (routes[0].receiver,)
        return tuple(dict.fromkeys([route.receiver for route in routes]))  # first-match order


# --- inhibition -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ActiveSource:
    expires: float
    description: str


@dataclass(frozen=True, slots=True)
class InhibitRule:
    name: str
    source: tuple[FieldMatcher, ...]
    target: tuple[FieldMatcher, ...]
    source_fields: tuple[FieldGetter, ...]
    target_fields: tuple[FieldGetter, ...]
    ttl: float

    @classmethod
    def from_config(cls, config: InhibitRuleConfig, index: int) -> InhibitRule:
        return cls(
            name=config.name or f"inhibit_rules[{index}]",
            source=compile_matchers(config.all_source()),
            target=compile_matchers(config.all_target()),
            source_fields=tuple(field_getter(p.source) for p in config.equal),
            target_fields=tuple(field_getter(p.target) for p in config.equal),
            ttl=config.source_ttl,
        )


def _values(getters: Sequence[FieldGetter], alert: Alert) -> tuple[str, ...] | None:
    """The `equal` values; None when one is empty: an unknown node must not match another
    unknown node (stricter than Alertmanager, where '' equals '')."""
    values = tuple(get(alert) for get in getters)
    return None if any(v == "" for v in values) else values


class Inhibitor:
    """Keeps the firing source alerts of each rule (until resolved or expired) and says
    whether a target alert is muted by one of them."""

    PRUNE_EVERY = 60.0

    def __init__(self, rules: Sequence[InhibitRuleConfig]) -> None:
        self.rules = tuple(InhibitRule.from_config(r, i) for i, r in enumerate(rules))
        # per rule: equal-values -> source alert key -> still active until
        self._active: list[dict[tuple[str, ...], dict[str, _ActiveSource]]] = [
            {} for _ in self.rules
        ]
        self._next_prune = 0.0

    def observe(self, alert: Alert, now: float) -> None:
        """Record `alert` as a source where it matches one (firing: until now + ttl)."""
        for rule, active in zip(self.rules, self._active, strict=True):
            if not all_match(rule.source, alert):
                continue
            values = _values(rule.source_fields, alert)
            if values is None:
                continue
            if alert.status == "resolved":
                sources = active.get(values)
                if sources is not None:
                    sources.pop(alert.key, None)
                    if not sources:
                        del active[values]
                continue
            described = f"{alert.reason} on {alert.regarding.describe()}"
            active.setdefault(values, {})[alert.key] = _ActiveSource(now + rule.ttl, described)
        if now >= self._next_prune:
            self.prune(now)

    def muted_by(self, alert: Alert, now: float) -> str | None:
        """Why `alert` is inhibited (rule and source), or None."""
        for rule, active in zip(self.rules, self._active, strict=True):
            if not active or not all_match(rule.target, alert):
                continue
            values = _values(rule.target_fields, alert)
            if values is None:
                continue
            for key, source in (active.get(values) or {}).items():
                if key != alert.key and source.expires > now:
                    return f"inhibited by rule {rule.name!r} (source: {source.description})"
        return None

    def prune(self, now: float) -> None:
        for active in self._active:
            for values in list(active):
                live = {k: s for k, s in active[values].items() if s.expires > now}
                if live:
                    active[values] = live
                else:
                    del active[values]
        self._next_prune = now + self.PRUNE_EVERY

    def active_sources(self) -> int:
        return sum(len(sources) for active in self._active for sources in active.values())


# --- silences and maintenance windows ---------------------------------------------------------


def in_weekly_window(window: WeeklyWindow, local: datetime) -> bool:
    """Whether the local wall-clock time `local` falls in `window`.

    Wall-clock semantics, as Alertmanager's time_intervals: on the day clocks spring forward
    a window inside the skipped hour does not happen; on the day they fall back, a window in
    the repeated hour covers both passes.
    """
    clock = local.time()
    today = local.weekday()
    if window.start < window.end:
        # `24:00` is stored as time.max, the last instant of the day, and includes it.
        before_end = clock < window.end or window.end == time.max
        return today in window.days and window.start <= clock and before_end
    # Past midnight: starts on a listed day, ends on the next day.
    yesterday = (today - 1) % 7
    return (today in window.days and clock >= window.start) or (
        yesterday in window.days and clock < window.end
    )


@dataclass(frozen=True, slots=True)
class Silence:
    name: str
    matchers: tuple[FieldMatcher, ...]
    starts: float | None
    ends: float | None
    weekly: tuple[WeeklyWindow, ...]
    zone: ZoneInfo

    @classmethod
    def from_config(cls, config: SilenceConfig, index: int) -> Silence:
        return cls(
            name=config.name or f"silences[{index}]",
            matchers=compile_matchers(config.all_matchers()),
            starts=config.tz_aware(config.starts).timestamp() if config.starts else None,
            ends=config.tz_aware(config.ends).timestamp() if config.ends else None,
            weekly=tuple(config.weekly),
            zone=ZoneInfo(config.time_zone),
        )

    def active(self, now: float) -> bool:
        if self.starts is not None and now < self.starts:
            return False
        if self.ends is not None and now >= self.ends:
            return False
        if not self.weekly:
            return True
        local = datetime.fromtimestamp(now, self.zone)
        return any(in_weekly_window(w, local) for w in self.weekly)

    def next_change_after(self, now: float) -> float | None:
        """When `active` may next change (for logs: "silenced until ..."), minute precision."""
        if self.starts is not None and now < self.starts:
            return self.starts
        if not self.weekly:
            return self.ends
        state = self.active(now)
        moment = datetime.fromtimestamp(now, self.zone).replace(second=0, microsecond=0)
        for _ in range(8 * 24 * 60):
            moment += timedelta(minutes=1)
            ts = moment.timestamp()
            if self.ends is not None and ts >= self.ends:
                return self.ends
            if self.active(ts) != state:
                return ts
        return None


class Silencer:
    def __init__(self, silences: Sequence[SilenceConfig]) -> None:
        self.silences = tuple(Silence.from_config(s, i) for i, s in enumerate(silences))

    def muted_by(self, alert: Alert, now: float) -> str | None:
        for silence in self.silences:
            if all_match(silence.matchers, alert) and silence.active(now):
                return f"silenced by {silence.name!r}"
        return None

    def expired(self, now: float) -> list[str]:
        """Silences whose end has passed: worth a warning at load, they do nothing."""
        return [s.name for s in self.silences if s.ends is not None and s.ends <= now]


# --- the stage --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where an alert goes. `receivers` is what the tree picked; when `muted_by` is set the
    alert goes nowhere and `muted_by` says why (for the log line)."""

    receivers: tuple[str, ...]
    muted_by: str | None = None

    @property
    def deliver_to(self) -> tuple[str, ...]:
        return () if self.muted_by else self.receivers


class RoutingStage:
    """Routes, silences and inhibition together, built from one config.

    Every alert is first recorded as a possible inhibition source (also when it is itself
    muted, as in Alertmanager), then silences and inhibition are checked.
    """

    def __init__(
        self,
        routes: RouteConfig | None,
        receivers: Sequence[str],
        inhibit_rules: Sequence[InhibitRuleConfig] = (),
        silences: Sequence[SilenceConfig] = (),
    ) -> None:
        self.router = Router(routes, receivers)
        self.inhibit_rules = tuple(inhibit_rules)
        self.inhibitor = Inhibitor(inhibit_rules)
        self.silencer = Silencer(silences)
        self.muted = 0  # plain counters for the metrics collector
        self.routed = 0

    @classmethod
    def from_config(cls, config: Config, previous: RoutingStage | None = None) -> RoutingStage:
        """Build from the whole config; on a reload pass the running stage as `previous` so
        unchanged inhibition rules keep their active sources and the counters keep counting."""
        stage = cls(
            config.routes,
            config.alert_receivers,
            config.inhibit_rules,
            config.silences,
        )
        if previous is not None:
            if previous.inhibit_rules == stage.inhibit_rules:
                stage.inhibitor = previous.inhibitor
            stage.muted, stage.routed = previous.muted, previous.routed
        return stage

    def decide(self, alert: Alert, now: float) -> RouteDecision:
        self.inhibitor.observe(alert, now)
        receivers = self.router.receivers(alert)
        muted_by = self.silencer.muted_by(alert, now) or self.inhibitor.muted_by(alert, now)
        if muted_by:
            self.muted += 1
        else:
            self.routed += 1
        return RouteDecision(receivers, muted_by)
