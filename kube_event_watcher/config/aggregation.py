"""The `aggregation:` section: dedup window, threshold rules, grouping and resolve.

Defaults are chosen for a first-time operator: one notification per workload and reason,
not one per event, and a resolved notification ten minutes after it goes quiet.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kube_event_watcher.config.durations import Duration, format_duration
from kube_event_watcher.config.match import MatchRule
from kube_event_watcher.config.model import StrictModel

KeyField = Literal[
    "cluster",
    "namespace",
    "kind",
    "name",
    "reason",
    "type",
    "reporting_controller",
    "note",
    "owner",
    "regarding.uid",
    "regarding.kind",
    "regarding.name",
    "regarding.namespace",
    "regarding.field_path",
]
"""Fields an occurrence can be keyed or grouped by. `owner` is the workload the object
belongs to (from enrichment when known, else the Pod's name without its ReplicaSet hash,
StatefulSet ordinal or random suffix)."""


def _default_dedup_key() -> list[KeyField]:
    return ["cluster", "regarding.uid", "reason"]


def _default_group_by() -> list[KeyField]:
    # Not by reason: a crash-looping rollout says BackOff, Unhealthy and Failed at once, and
    # the operator wants one message for the workload that lists the reasons (issue 4).
    return ["cluster", "namespace", "owner"]


def _unique(fields: list[KeyField], what: str) -> list[KeyField]:
    if len(set(fields)) != len(fields):
        raise ValueError(f"{what}: each field at most once, got {fields}")
    return fields


class DedupConfig(StrictModel):
    """Occurrences with the same key are one alert; the key is announced once.

    A key stays live while occurrences keep coming less than `window` apart (a sliding
    window); a key quiet for longer is shown as cleared in its group's notifications.
    """

    key: list[KeyField] = Field(default_factory=_default_dedup_key, min_length=1)
    window: Duration = Field(default=300.0, gt=0)

    @field_validator("key")
    @classmethod
    def _distinct(cls, value: list[KeyField]) -> list[KeyField]:
        return _unique(value, "aggregation.dedup.key")


class ThresholdRule(StrictModel):
    """Hold back keys matching `match` until they occur `count` times within `within`
    (series increments count, so one event seen 5 times counts 5)."""

    match: MatchRule
    count: int = Field(ge=1)
    within: Duration = Field(gt=0)


class GroupConfig(StrictModel):
    """Grouping in the manner of Alertmanager: one notification per group.

    The first after `wait` (to collect the rest of a burst), then at most every `interval`
    when there is news, a reminder every `repeat` while it keeps firing, and a resolved
    notification once nothing happened for `resolve_after`. News is what the last message
    did not say: a new reason, a new workload, a turn from Normal to Warning, or
    `update_factor` times the objects it listed; more Pods of the same failure are not news
    (the resolve gives the totals).
    """

    by: list[KeyField] = Field(default_factory=_default_group_by, min_length=1)
    wait: Duration = 30.0
    interval: Duration = Field(default=300.0, gt=0)
    repeat: Duration = Field(default=4 * 3600.0, gt=0)
    resolve_after: Duration = Field(default=600.0, gt=0)
    node_reasons: list[str] = Field(default_factory=lambda: ["NodeNotReady"])
    """A Pod occurrence with one of these reasons joins its Node's group (the Node's own
    finding and every Pod it took down: one incident). The Pod's Node is read from the
    object cache, so this needs the detectors or `enrichment.watch_objects`; without it the
    Pod groups as usual."""
    update_factor: float = Field(default=3.0, ge=1.0)
    """A firing group is announced again when it reaches this many times the objects its last
    message listed (1: every new object is news)."""
    max_members: int = Field(default=20, ge=1, le=1000)
    """How many members a notification lists (the counts always cover all of them)."""

    @field_validator("by")
    @classmethod
    def _distinct(cls, value: list[KeyField]) -> list[KeyField]:
        return _unique(value, "aggregation.group.by")


class AggregationConfig(StrictModel):
    enabled: bool = True
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    thresholds: list[ThresholdRule] = Field(default_factory=list)
    group: GroupConfig = Field(default_factory=GroupConfig)
    max_keys: int = Field(default=200_000, ge=100)
    """Live keys kept (threshold candidates and group members); the oldest are evicted."""
    max_groups: int = Field(default=10_000, ge=10)
    """Live groups kept; the group quiet the longest is evicted (and counted) first."""

    @model_validator(mode="after")
    def _order(self) -> AggregationConfig:
        group = self.group
        resolve_after, wait = format_duration(group.resolve_after), format_duration(group.wait)
        if group.resolve_after <= group.wait:
            raise ValueError(
                f"aggregation.group.resolve_after ({resolve_after}) must be longer "
                f"than group.wait ({wait}), or a group resolves before it is announced"
            )
        if group.repeat < group.interval:
            repeat, interval = format_duration(group.repeat), format_duration(group.interval)
            raise ValueError(
                f"aggregation.group.repeat ({repeat}) must not be shorter than "
                f"group.interval ({interval})"
            )
        return self
