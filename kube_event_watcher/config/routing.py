"""Config for routing: the route tree, inhibition rules and silences (maintenance windows).

Matchers come in two spellings, both allowed on the same route and combined with AND:
- `matchers: ['namespace=~"payments-.*"', 'reason!="BackOff"', 'labels.team="pay"']`,
  Alertmanager's matcher syntax (`=`, `!=`, `=~`, `!~`; regexes match the whole value);
- `match: {namespace: "payments-.*"}`, a mapping of field to a regular expression (full
  match), the same meaning as in `filters:`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.model import StrictModel

# Fields a matcher may name. `labels.<key>` and `facts.<path>` are open-ended.
PLAIN_FIELDS = (
    "cluster",
    "namespace",
    "kind",
    "name",
    "reason",
    "type",
    "status",
    "reporting_controller",
    "note",
)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_OPERATORS = ("=~", "!~", "!=", "=")
MatchOp = Literal["=", "!=", "=~", "!~"]


def check_field(name: str) -> str:
    """A field name a matcher can read, or ValueError naming what is allowed."""
    if name in PLAIN_FIELDS:
        return name
    for prefix in ("labels.", "facts."):
        if name.startswith(prefix) and len(name) > len(prefix):
            return name
    allowed = ", ".join(PLAIN_FIELDS)
    raise ValueError(f"unknown field {name!r} (use one of {allowed}, labels.<key> or facts.<path>)")


@dataclass(frozen=True, slots=True)
class MatcherSpec:
    """One parsed matcher: `field op value`."""

    field: str
    op: MatchOp
    value: str

    def __str__(self) -> str:
        quoted = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.field}{self.op}"{quoted}"'


def _unquote(text: str, whole: str) -> str:
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        if '"' in text:
            raise ValueError(f"unbalanced quotes in matcher {whole!r}")
        return text
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        if ch == '"':
            raise ValueError(f"unescaped quote inside the value of matcher {whole!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_matcher(text: str) -> MatcherSpec:
    """Parse `namespace=~"payments-.*"` (quotes optional) into a MatcherSpec."""
    if not isinstance(text, str):
        raise ValueError(f"expected a matcher like 'namespace=~\"payments-.*\"', got {text!r}")
    stripped = text.strip()
    name_match = _FIELD_NAME.match(stripped)
    if name_match is None:
        raise ValueError(f"expected a matcher like 'namespace=~\"payments-.*\"', got {text!r}")
    field = name_match.group(0)
    rest = stripped[name_match.end() :].lstrip()
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        raise ValueError(
            f"matcher {text!r}: expected one of = != =~ !~ after {field!r}"
            f" (e.g. '{field}=~\"payments-.*\"')"
        )
    check_field(field)
    value = _unquote(rest[len(op) :].strip(), text)
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"matcher {text!r}: not a valid regular expression ({exc})") from exc
    return MatcherSpec(field, op, value)  # type: ignore[arg-type]


def _matcher_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str | MatcherSpec):
        return [value]
    return value


def _matcher(value: Any) -> Any:
    return value if isinstance(value, MatcherSpec) else parse_matcher(value)


def _check_match_mapping(value: dict[str, str]) -> dict[str, str]:
    for name, pattern in value.items():
        check_field(name)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"{name}: expected a regular expression, got {pattern!r} ({exc})"
            ) from exc
    return value


Matchers = Annotated[
    list[Annotated[MatcherSpec, BeforeValidator(_matcher), PlainSerializer(str, return_type=str)]],
    BeforeValidator(_matcher_list),
]
MatchMapping = Annotated[dict[str, str], AfterValidator(_check_match_mapping)]


class MatchersModel(StrictModel):
    """`match` (field → full-match regex) and `matchers` (Alertmanager syntax), ANDed."""

    match: MatchMapping = Field(default_factory=dict)
    matchers: Matchers = Field(default_factory=list)

    def all_matchers(self) -> list[MatcherSpec]:
        mapped = [MatcherSpec(k, "=~", v) for k, v in self.match.items()]
        return [*mapped, *self.matchers]


class RouteConfig(MatchersModel):
    """A node of the route tree. A child without `receiver` inherits its parent's."""

    model_config = MatchersModel.model_config | {
        "populate_by_name": True,
        "serialize_by_alias": True,
    }

    receiver: str | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[RouteConfig] = Field(default_factory=list)


class EqualPair(StrictModel):
    """A field of the source alert that must equal a (differently named) field of the target."""

    source: str
    target: str

    @field_validator("source", "target")
    @classmethod
    def _field(cls, value: str) -> str:
        return check_field(value)


def _equal_item(value: Any) -> Any:
    if isinstance(value, str):
        check_field(value)
        return EqualPair(source=value, target=value)
    return value


class InhibitRuleConfig(StrictModel):
    """While a source alert fires, target alerts with the same `equal` fields are muted.

    A source stays active until it resolves or `source_ttl` after it was last seen (events
    rarely resolve, so a source must expire by itself).
    """

    name: str | None = None
    source_match: MatchMapping = Field(default_factory=dict)
    source_matchers: Matchers = Field(default_factory=list)
    target_match: MatchMapping = Field(default_factory=dict)
    target_matchers: Matchers = Field(default_factory=list)
    equal: list[Annotated[EqualPair, BeforeValidator(_equal_item)]] = Field(default_factory=list)
    source_ttl: Duration = 1800.0

    @model_validator(mode="after")
    def _has_matchers(self) -> InhibitRuleConfig:
        if not (self.source_match or self.source_matchers):
            raise ValueError("give source_matchers (or source_match): which alerts mute others")
        if not (self.target_match or self.target_matchers):
            raise ValueError("give target_matchers (or target_match): which alerts get muted")
        return self

    def all_source(self) -> list[MatcherSpec]:
        return [
            *(MatcherSpec(k, "=~", v) for k, v in self.source_match.items()),
            *self.source_matchers,
        ]

    def all_target(self) -> list[MatcherSpec]:
        return [
            *(MatcherSpec(k, "=~", v) for k, v in self.target_match.items()),
            *self.target_matchers,
        ]


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _day_index(name: str) -> int:
    key = name.strip().lower()[:3]
    if key not in _DAYS:
        raise ValueError(f"expected a weekday like mon, tue, ... sun, got {name!r}")
    return _DAYS.index(key)


def _parse_days(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of weekdays like [mon-fri, sun], got {value!r}")
    days: set[int] = set()
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"expected a weekday like mon or a range like mon-fri, got {item!r}")
        if "-" in item:
            first, last = (_day_index(p) for p in item.split("-", 1))
            span = (last - first) % 7
            days.update((first + i) % 7 for i in range(span + 1))
        else:
            days.add(_day_index(item))
    return sorted(days)


def _parse_clock(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 02:30 as the sexagesimal number 150.
        value = f"{value // 60:02d}:{value % 60:02d}"
    if isinstance(value, str):
        if value.strip() == "24:00":
            return time.max
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    if isinstance(value, time):
        return value
    raise ValueError(f"expected a time of day like '02:00' or '23:30', got {value!r}")


class WeeklyWindow(StrictModel):
    """Every listed weekday from `start` to `end`, local time; an end before the start means
    the window runs past midnight into the next day."""

    days: Annotated[list[int], BeforeValidator(_parse_days)] = Field(
        default_factory=lambda: list(range(7))
    )
    start: Annotated[time, BeforeValidator(_parse_clock)]
    end: Annotated[time, BeforeValidator(_parse_clock)]

    @model_validator(mode="after")
    def _not_empty(self) -> WeeklyWindow:
        if self.start == self.end:
            raise ValueError("start and end are the same time: the window would be empty")
        return self


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"expected an IANA time zone like 'Asia/Shanghai' or 'UTC', got {value!r}"
        ) from exc
    return value


class SilenceConfig(MatchersModel):
    """Mute matching alerts between `starts` and `ends`, and/or in weekly windows."""

    name: str | None = None
    comment: str | None = None
    starts: datetime | None = None
    ends: datetime | None = None
    weekly: list[WeeklyWindow] = Field(default_factory=list)
    time_zone: Annotated[str, AfterValidator(_zone)] = "UTC"

    @model_validator(mode="after")
    def _bounded(self) -> SilenceConfig:
        if self.ends is None and not self.weekly:
            raise ValueError(
                "give `ends` or a `weekly` window (to drop alerts for good, use filters.drop)"
            )
        if not self.all_matchers():
            raise ValueError(
                "give matchers (or match): a silence without them would mute everything"
            )
        if self.starts and self.ends and self.tz_aware(self.ends) <= self.tz_aware(self.starts):
            raise ValueError("ends is not after starts")
        return self

    def tz_aware(self, moment: datetime) -> datetime:
        """A naive `starts`/`ends` is read in the silence's time zone."""
        if moment.tzinfo is None:
            return moment.replace(tzinfo=ZoneInfo(self.time_zone))
        return moment


def receiver_reference_problems(
    routes: RouteConfig | None, receivers: list[str], publishers: Sequence[str] = ()
) -> list[str]:
    """One problem per route that names a receiver not configured, or one that publishes
    occurrences (they take every occurrence, not routed alerts), with its key path."""
    known = ", ".join(receivers) or "none configured"
    problems: list[str] = []
    if routes is None:
        return problems
    if routes.receiver is None:
        problems.append(
            f"routes.receiver: the root route needs a default receiver (known: {known})"
        )

    def walk(route: RouteConfig, path: str) -> None:
        if route.receiver in publishers:
            problems.append(
                f"{path}.receiver: {route.receiver!r} publishes occurrences (records: "
                "occurrences): it gets every occurrence before aggregation, never a routed "
                "alert; route to a receiver of alerts"
            )
        elif route.receiver is not None and route.receiver not in receivers:
            problems.append(
                f"{path}.receiver: no receiver named {route.receiver!r} (known: {known})"
            )
        for i, child in enumerate(route.routes):
            walk(child, f"{path}.routes[{i}]")

    walk(routes, "routes")
    return problems
