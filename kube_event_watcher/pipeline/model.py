"""The values that flow through the pipeline: raw events in, Occurrences, then Alerts out."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import msgspec

# --- raw API objects: only the fields we read, decoded by msgspec (kube/wire.py) -----------
#
# Structs, not TypedDict dicts: msgspec builds them ~1.35x faster than the dicts, and the
# stages read attributes instead of dict lookups (bench/RESULTS.md, 2026-12-02). Every field
# may be null or absent (None); a field of the wrong type refuses the object while decoding.
# gc=False: they hold only strings, numbers and each other, never a cycle. This module is
# not compiled with mypyc (setup.py): msgspec needs its own classes, not mypyc's.


class RawObjectReference(msgspec.Struct, rename="camel", frozen=True, gc=False):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    api_version: str | None = None
    field_path: str | None = None


class RawObjectMeta(msgspec.Struct, rename="camel", frozen=True, gc=False):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    creation_timestamp: str | None = None


class RawEventSeries(msgspec.Struct, rename="camel", frozen=True, gc=False):
    count: int | None = None
    last_observed_time: str | None = None


class RawEvent(msgspec.Struct, rename="camel", frozen=True, gc=False):
    """An events.k8s.io/v1 Event as the API serves it: the fields the pipeline reads (the
    watch decodes only these, kube/wire.py). Any may be null or absent."""

    metadata: RawObjectMeta | None = None
    event_time: str | None = None
    series: RawEventSeries | None = None
    reporting_controller: str | None = None
    reporting_instance: str | None = None
    action: str | None = None
    reason: str | None = None
    regarding: RawObjectReference | None = None
    note: str | None = None
    type: str | None = None
    deprecated_count: int | None = None
    deprecated_first_timestamp: str | None = None
    deprecated_last_timestamp: str | None = None


WatchType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]

# --- pipeline values ----------------------------------------------------------------------


class ObjectRef(NamedTuple):
    """The object an event is about.

    A NamedTuple rather than a frozen dataclass: it is built once per event on the hot
    path, and a frozen dataclass's __init__ costs ~2 µs for six fields (bench/RESULTS.md).
    """

    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str = ""
    field_path: str = ""

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


class Occurrence(NamedTuple):
    """One thing that happened: a new event, or a grown series count of a known one.

    `count` is how many times it happened in this change (the series increment);
    `total` is the event's count so far. Immutable; a NamedTuple for the same reason as
    ObjectRef (one per event on the hot path).
    """

    cluster: str
    uid: str
    name: str
    namespace: str
    resource_version: str
    type: str
    reason: str
    note: str
    action: str
    regarding: ObjectRef
    reporting_controller: str
    reporting_instance: str
    # Shadows tuple.count(), which nothing here uses; the name is the domain's word.
    count: int  # type: ignore[assignment]
    total: int
    first_seen: float
    last_seen: float

    @property
    def identity(self) -> str:
        """Stable across relists and restarts: the same occurrence always has the same id."""
        return f"{self.cluster}/{self.uid}/{self.total}"


AlertStatus = Literal["firing", "resolved"]


class AlertMember(NamedTuple):
    """One key of a group notification: an object and reason, with its own counts.

    `firing` is False once the key has been quiet for the dedup window. A NamedTuple: a
    notification lists up to `max_members` of them, and a frozen dataclass costs twice as
    much to build.
    """

    key: str
    regarding: ObjectRef
    reason: str
    count: int  # type: ignore[assignment]  # shadows tuple.count(), as in Occurrence
    first_seen: float
    last_seen: float
    firing: bool = True


class ObjectMembers(NamedTuple):
    """One object of a group notification with every reason it was listed for."""

    regarding: ObjectRef
    reasons: tuple[tuple[str, int], ...]  # (reason, count), as listed
    firing: bool  # any of its keys still firing


def members_by_object(members: Sequence[AlertMember]) -> list[ObjectMembers]:
    """A group's members (one per object and reason) as one entry per object, in the order
    the objects first appear: a Pod that says BackOff and Unhealthy is one line, not two."""
    order: dict[str, list[AlertMember]] = {}
    for member in members:
        ref = member.regarding
        order.setdefault(ref.uid or ref.describe(), []).append(member)
    return [
        ObjectMembers(
            same[0].regarding,
            tuple((m.reason, m.count) for m in same),
            any(m.firing for m in same),
        )
        for same in order.values()
    ]


def stable_id(*parts: str) -> str:
    """A short, stable id for idempotency keys (webhook-id, dedup_key, file line key)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Alert:
    """What a notifier sends: one notification about one or more occurrences.

    `key` names the alert's identity (the same key for firing and its resolve, and for
    repeats); `notification_id` names this one notification and stays the same when the
    very same notification is re-sent after a crash, so platforms can drop the repeat.
    """

    key: str
    notification_id: str
    status: AlertStatus
    cluster: str
    namespace: str
    regarding: ObjectRef
    reason: str
    type: str
    note: str
    count: int
    first_seen: float
    last_seen: float
    occurrences: tuple[Occurrence, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    # Set by aggregation; a single-occurrence alert leaves them empty.
    group_key: str = ""
    """The group's values (`labels`) joined: readable, unlike the hashed `key`."""
    members: tuple[AlertMember, ...] = ()
    """The group's members, most recent first, capped by `aggregation.group.max_members`."""
    member_count: int = 0
    """All members of the group, including those not listed in `members`."""
    objects: Mapping[str, int] = field(default_factory=dict)
    """Distinct objects per kind, e.g. {"Pod": 20}."""
    reasons: Mapping[str, int] = field(default_factory=dict)
    """Occurrences per reason, most frequent first."""
    sequence: int = 0
    """1 for a group's first notification, then 2, 3, ... (repeats, updates, resolve)."""
    new_members: int = 0
    """How many members this notification announces for the first time."""
    workloads: tuple[str, ...] = ()
    """The workloads (owners) of the group's objects, sorted: named even when the group is
    not by owner (by namespace, by reason)."""

    @classmethod
    def from_occurrence(cls, occ: Occurrence) -> Alert:
        return cls(
            key=stable_id(occ.cluster, occ.regarding.uid or occ.regarding.describe(), occ.reason),
            notification_id=stable_id(occ.identity),
            status="firing",
            cluster=occ.cluster,
            namespace=occ.namespace,
            regarding=occ.regarding,
            reason=occ.reason,
            type=occ.type,
            note=occ.note,
            count=occ.count,
            first_seen=occ.first_seen,
            last_seen=occ.last_seen,
            occurrences=(occ,),
        )
