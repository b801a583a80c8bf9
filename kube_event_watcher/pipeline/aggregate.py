"""The aggregate stage: occurrences in, few group notifications out, decided against `now`.

Pure logic: no I/O, no sleeping, no wall clock. The daemon hands in `now` (epoch seconds, so
deadlines survive a restart through `snapshot`/`restore`), calls `tick` when
`next_deadline` comes, and commits `snapshot()` together with the seen-ledger.

The rules, in order (docs/aggregation.md explains them for operators):

1. **Dedup**: occurrences with the same dedup key are one *key*; its count grows by each
   occurrence's series increment. A key is announced once per group life; a key quiet for
   `dedup.window` is shown as cleared.
2. **Thresholds**: a key matching a threshold rule is held back until it has occurred
   `count` times within `within` (a sliding window), then it joins its group.
3. **Grouping** (Alertmanager's timers): a group's first notification goes out `wait` after
   it formed; later ones at most every `interval`, and only when new keys joined; while it
   keeps firing, a reminder every `repeat`.
4. **Resolve**: a notified group with no occurrence for `resolve_after` sends one resolved
   notification and is forgotten; a later occurrence starts a new group life.
"""

from __future__ import annotations

import gc
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from kube_event_watcher.config.aggregation import AggregationConfig
from kube_event_watcher.pipeline.grouping import NodeLookup, OwnerLookup, key_function
from kube_event_watcher.pipeline.matching import Matcher, compile_any
from kube_event_watcher.pipeline.model import (
    Alert,
    AlertMember,
    AlertStatus,
    ObjectRef,
    Occurrence,
    stable_id,
)

SNAPSHOT_VERSION = 1

KeyValues = tuple[str, ...]


class SnapshotMismatch(ValueError):
    """The saved state was written for different key/group fields; it cannot be reused."""


class _Key:
    """One dedup key: a pending threshold candidate, or a member of a group."""

    __slots__ = (
        "announced",
        "count",
        "first_seen",
        "group",
        "hits",
        "hits_sum",
        "id",
        "last_seen",
        "reason",
        "regarding",
        "rule",
        "seen_at",
        "values",
    )

    # Fields, not an Occurrence: a restored key is built from its snapshot row the same way
    # (compiled with mypyc, `_Key.__new__(_Key)` without __init__ is not possible).
    def __init__(
        self,
        values: KeyValues,
        regarding: ObjectRef,
        reason: str,
        first_seen: float,
        last_seen: float,
        rule: int,
        now: float,
    ) -> None:
        self.values = values
        self.regarding = regarding
        self.reason = reason
        self.count = 0
        self.first_seen = first_seen
        self.last_seen = last_seen
        self.seen_at = now
        self.rule = rule
        self.group: _Group | None = None
        self.announced = False
        self.hits: deque[tuple[float, int]] | None = deque() if rule >= 0 else None
        self.hits_sum = 0
        self.id = ""  # stable_id(*values), made when the key joins its group

    def observe(self, occ: Occurrence, now: float) -> None:
        self.count += occ.count
        if occ.first_seen < self.first_seen:
            self.first_seen = occ.first_seen
        if occ.last_seen > self.last_seen:
            self.last_seen = occ.last_seen
        self.seen_at = now


class _Group:
    __slots__ = (
        "active_at",
        "cluster",
        "count",
        "dropped_members",
        "first_seen",
        "last_seen",
        "life",
        "members",
        "namespace",
        "news_since",
        "note",
        "notified_at",
        "objects",
        "reasons",
        "scheduled",
        "sequence",
        "started_at",
        "told_objects",
        "told_reasons",
        "told_workloads",
        "type",
        "values",
        "workloads",
    )

    # Fields, not an Occurrence, for the same reason as _Key's (see _new_group).
    def __init__(
        self,
        values: KeyValues,
        life: str,
        cluster: str,
        namespace: str,
        type: str,
        note: str,
        first_seen: float,
        last_seen: float,
        now: float,
    ) -> None:
        self.values = values
        self.life = life
        self.cluster = cluster
        self.namespace = namespace
        self.type = type
        self.note = note
        self.count = 0
        self.reasons: dict[str, int] = {}
        self.first_seen = first_seen
        self.last_seen = last_seen
        self.started_at = now
        self.active_at = now
        self.notified_at: float | None = None
        self.news_since: float | None = None
        self.sequence = 0
        self.members: dict[KeyValues, _Key] = {}
        self.dropped_members = 0
        self.scheduled: float | None = None
        # What the last firing message told, so that only news is announced again: how many
        # objects, which reasons and which workloads (None: not known, from an older snapshot).
        self.objects: dict[str, int] = {}  # object uid -> member keys about it
        self.workloads: set[str] = set()
        self.told_objects = 0
        self.told_reasons: set[str] = set()
        self.told_workloads: set[str] | None = set()

    def observe(self, occ: Occurrence, count: int, now: float) -> None:
        self.count += count
        self.reasons[occ.reason] = self.reasons.get(occ.reason, 0) + count
        if occ.first_seen < self.first_seen:
            self.first_seen = occ.first_seen
        if occ.last_seen > self.last_seen:
            self.last_seen = occ.last_seen
        if occ.type == "Warning":
            self.type = "Warning"
        if occ.note:
            self.note = occ.note
        self.active_at = now


def _new_group(values: KeyValues, occ: Occurrence, now: float) -> _Group:
    # The first occurrence's identity names this life of the group: stable when the same
    # occurrences are replayed after a crash, different for a later life.
    return _Group(
        values,
        occ.identity,
        occ.cluster,
        occ.regarding.namespace or occ.namespace,
        occ.type,
        occ.note,
        occ.first_seen,
        occ.last_seen,
        now,
    )


class Aggregator:
    """Dedup, thresholds, grouping and resolve for every cluster and scope in one place.

    Not thread-safe and not async: the daemon calls it from one task at a time (the same
    lock that guards the checkpoint), so a snapshot never sees half an update.
    """

    def __init__(
        self,
        config: AggregationConfig,
        owner_of: OwnerLookup | None = None,
        node_of: NodeLookup | None = None,
    ) -> None:
        self.config = config
        self._enabled = config.enabled
        self._dedup_key = key_function(config.dedup.key, owner_of)
        self._group_key = key_function(config.group.by, owner_of)
        self._group_fields: tuple[str, ...] = tuple(config.group.by)
        self._fingerprint: list[list[str]] = [list(config.dedup.key), list(self._group_fields)]
        self._thresholds = tuple(
            (compile_any((Matcher.from_rule(rule.match),)), rule.count, rule.within)
            for rule in config.thresholds
        )
        group = config.group
        self._window = config.dedup.window
        self._wait = group.wait
        self._interval = group.interval
        self._repeat = group.repeat
        self._resolve_after = group.resolve_after
        self._max_members = group.max_members
        self._factor = group.update_factor
        self._workload_of = key_function(["owner"], owner_of)
        self._node_of = node_of
        self._node_reasons = frozenset(group.node_reasons)
        self._max_keys = config.max_keys
        self._max_groups = config.max_groups
        # Both ordered oldest activity first, so eviction and expiry pop from the front.
        self._pending: OrderedDict[KeyValues, _Key] = OrderedDict()
        self._members: OrderedDict[KeyValues, _Key] = OrderedDict()
        self._groups: OrderedDict[KeyValues, _Group] = OrderedDict()
        # (deadline, group values): equal deadlines go in group order, the same after a
        # restore; stale entries are skipped when popped.
        self._deadlines: list[tuple[float, KeyValues]] = []
        self.evictions: dict[str, int] = {"keys": 0, "groups": 0}
        """Keys and groups dropped because a cap was reached; exported as a metric."""

    # -- sizes, for metrics and tests -----------------------------------------------------------

    @property
    def live_keys(self) -> int:
        return len(self._pending) + len(self._members)

    @property
    def live_groups(self) -> int:
        return len(self._groups)

    # -- input ----------------------------------------------------------------------------------

    def add(self, occ: Occurrence, now: float) -> list[Alert]:
        """Take one occurrence; return the notifications due right away (usually none)."""
        if not self._enabled:
            return [Alert.from_occurrence(occ)]
        values = self._dedup_key(occ)
        key = self._members.get(values)
        if key is not None:
            # The common case in a storm: a known key again. _Key.observe and
            # _observe_group inlined (a method call costs ~0.3 µs per event here).
            self._members.move_to_end(values)
            count, first, last = occ.count, occ.first_seen, occ.last_seen
            key.count += count
            if first < key.first_seen:
                key.first_seen = first
            if last > key.last_seen:
                key.last_seen = last
            key.seen_at = now
            group = key.group
            assert group is not None
            group.count += count
            reasons, reason = group.reasons, occ.reason
            seen = reasons.get(reason)
            if seen is None:
                reasons[reason] = count
                if reason not in group.told_reasons:
                    self._news(group, now)
            else:
                reasons[reason] = seen + count
            if first < group.first_seen:
                group.first_seen = first
            if last > group.last_seen:
                group.last_seen = last
            if occ.type == "Warning" and group.type != "Warning":
                group.type = "Warning"
                self._news(group, now)  # it turned from Normal to Warning
            if occ.note:
                group.note = occ.note
            group.active_at = now
            self._groups.move_to_end(group.values)
        else:
            key = self._pending.get(values)
            if key is None:
                self._make_room_for_key()
                key = _Key(
                    values,
                    occ.regarding,
                    occ.reason,
                    occ.first_seen,
                    occ.last_seen,
                    self._rule_for(occ),
                    now,
                )
                self._pending[values] = key
            else:
                self._pending.move_to_end(values)
            key.observe(occ, now)
            if self._threshold_met(key, occ.count, now):
                del self._pending[values]
                self._join(key, occ, now)
        deadlines = self._deadlines
        if deadlines and deadlines[0][0] <= now:
            return self.tick(now)
        return []

    def _rule_for(self, occ: Occurrence) -> int:
        for index, (matches, _, _) in enumerate(self._thresholds):
            if matches(occ):
                return index
        return -1

    def _threshold_met(self, key: _Key, count: int, now: float) -> bool:
        if key.hits is None:
            return True
        _, needed, within = self._thresholds[key.rule]
        hits = key.hits
        hits.append((now, count))
        key.hits_sum += count
        while hits and hits[0][0] <= now - within:
            key.hits_sum -= hits.popleft()[1]
        return key.hits_sum >= needed

    def _join(self, key: _Key, occ: Occurrence, now: float) -> None:
        """A key that passed its threshold (or had none) becomes a member of its group."""
        as_group = self._as_node_outage(occ)
        values = self._group_key(as_group)
        group = self._groups.get(values)
        if group is None:
            group = _new_group(values, as_group, now)
            self._make_room_for_group()
            self._groups[values] = group
        key.group = group
        key.hits = None
        key.id = stable_id(*key.values)
        group.members[key.values] = key
        self._members[key.values] = key
        uid = key.regarding.uid or key.regarding.describe()
        group.objects[uid] = group.objects.get(uid, 0) + 1
        workload = self._workload_of(occ)[0]
        group.workloads.add(workload)
        if group.notified_at is not None and self._tells_more(group, key, occ, workload):
            self._news(group, now)
        self._observe_group(group, occ, key.count, now)
        self._schedule(group)

    def _as_node_outage(self, occ: Occurrence) -> Occurrence:
        """A Pod taken down by its Node (NodeNotReady) grouped as the Node: the occurrence
        as if about the Node, for the group's key only (its key and member stay the Pod)."""
        if (
            self._node_of is None
            or occ.reason not in self._node_reasons
            or occ.regarding.kind != "Pod"
        ):
            return occ
        node = self._node_of(occ)
        if not node:
            return occ
        return occ._replace(regarding=ObjectRef("Node", "", node, ""), namespace="")

    def _tells_more(self, group: _Group, key: _Key, occ: Occurrence, workload: str) -> bool:
        """Whether a key joining an announced group is worth another message: a reason or a
        workload the last one did not name, a turn to Warning, or `update_factor` times the
        objects it listed. Merely more of the same is not (the resolve gives the totals)."""
        told = group.told_workloads
        return (
            key.reason not in group.told_reasons
            or (told is not None and workload not in told)
            or (occ.type == "Warning" and group.type != "Warning")
            or len(group.objects) >= max(group.told_objects + 1, group.told_objects * self._factor)
        )

    def _news(self, group: _Group, now: float) -> None:
        if group.notified_at is not None and group.news_since is None:
            group.news_since = now
            self._schedule(group)

    def _observe_group(self, group: _Group, occ: Occurrence, count: int, now: float) -> None:
        group.observe(occ, count, now)
        self._groups.move_to_end(group.values)

    # -- bounds ---------------------------------------------------------------------------------

    def _make_room_for_key(self) -> None:
        while len(self._pending) + len(self._members) >= self._max_keys:
            if self._pending:
                self._pending.popitem(last=False)
            else:
                _, key = self._members.popitem(last=False)
                if key.group is not None:
                    del key.group.members[key.values]
                    key.group.dropped_members += 1
                    _forget_object(key.group, key)
            self.evictions["keys"] += 1

    def _make_room_for_group(self) -> None:
        while len(self._groups) >= self._max_groups:
            _, group = self._groups.popitem(last=False)
            self._forget_members(group)
            self.evictions["groups"] += 1

    def _forget_members(self, group: _Group) -> None:
        for values in group.members:
            self._members.pop(values, None)

    # -- time -----------------------------------------------------------------------------------

    def _deadline(self, group: _Group) -> float:
        resolve = group.active_at + self._resolve_after
        if group.notified_at is None:
            return min(group.started_at + self._wait, resolve)
        due = group.notified_at + self._repeat
        if group.news_since is not None:
            due = min(due, max(group.notified_at + self._interval, group.news_since))
        return min(due, resolve)

    def _schedule(self, group: _Group) -> None:
        deadline = self._deadline(group)
        if group.scheduled is None or deadline < group.scheduled:
            group.scheduled = deadline
            heapq.heappush(self._deadlines, (deadline, group.values))

    def _is_current(self, entry: tuple[float, KeyValues]) -> bool:
        group = self._groups.get(entry[1])
        return group is not None and group.scheduled == entry[0]

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do (epoch seconds), or None when nothing is due."""
        heap = self._deadlines
        while heap:
            if not self._is_current(heap[0]):
                heapq.heappop(heap)
                continue
            group = self._groups[heap[0][1]]
            if self._deadline(group) <= heap[0][0]:
                return heap[0][0]
            # Activity since it was scheduled moved the deadline later: reschedule lazily.
            heapq.heappop(heap)
            group.scheduled = None
            self._schedule(group)
        return None

    def tick(self, now: float) -> list[Alert]:
        """The notifications due by `now`: first notifications, updates, repeats, resolves."""
        alerts: list[Alert] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._is_current(entry):
                continue
            group = self._groups[entry[1]]
            group.scheduled = None
            if self._deadline(group) <= now:
                alert = self._decide(group, now)
                if alert is not None:
                    alerts.append(alert)
            if group.values in self._groups:
                self._schedule(group)
        self._expire_pending(now)
        return alerts

    def _decide(self, group: _Group, now: float) -> Alert | None:
        if now >= group.active_at + self._resolve_after:
            del self._groups[group.values]
            self._forget_members(group)
            if group.notified_at is None:
                return None
            return self._alert(group, "resolved", now)
        if group.notified_at is None or group.news_since is not None:
            if group.notified_at is not None and now < group.notified_at + self._interval:
                return None
        elif now < group.notified_at + self._repeat:
            return None
        alert = self._alert(group, "firing", now)
        group.notified_at = now
        group.news_since = None
        group.told_objects = len(group.objects)
        group.told_reasons = set(group.reasons)
        group.told_workloads = set(group.workloads)
        for key in group.members.values():
            key.announced = True
        return alert

    def _expire_pending(self, now: float) -> None:
        """Drop threshold candidates whose hits all fell out of their window (memory only)."""
        pending = self._pending
        while pending:
            key = next(iter(pending.values()))
            within = self._thresholds[key.rule][2]
            if key.seen_at + max(within, self._window) > now:
                break
            pending.popitem(last=False)

    # -- output ---------------------------------------------------------------------------------

    def _alert(self, group: _Group, status: AlertStatus, now: float) -> Alert:
        group.sequence += 1
        recent = sorted(group.members.values(), key=lambda k: k.seen_at, reverse=True)
        # One object's keys (its reasons) side by side, objects most recent first: the
        # listed members then cut at most one object short.
        by_object: dict[str, list[_Key]] = {}
        for key in recent:
            by_object.setdefault(key.regarding.uid or key.regarding.describe(), []).append(key)
        members = [key for keys in by_object.values() for key in keys]
        new = sum(1 for k in members if not k.announced)
        objects: dict[str, set[str]] = {}
        for key in members:
            ref = key.regarding
            objects.setdefault(ref.kind or "object", set()).add(ref.uid or ref.describe())
        reasons = dict(sorted(group.reasons.items(), key=lambda item: (-item[1], item[0])))
        labels = dict(zip(self._group_fields, group.values, strict=True))
        key_id = stable_id("group", *self._group_fields, *group.values)
        listed = tuple(
            AlertMember(
                key=k.id,
                regarding=k.regarding,
                reason=k.reason,
                count=k.count,
                first_seen=k.first_seen,
                last_seen=k.last_seen,
                firing=status == "firing" and now - k.seen_at < self._window,
            )
            for k in members[: self._max_members]
        )
        return Alert(
            key=key_id,
            notification_id=stable_id(key_id, group.life, status, str(group.sequence)),
            status=status,
            cluster=group.cluster,
            namespace=labels.get("namespace", group.namespace),
            regarding=self._representative(group, labels, members),
            reason=next(iter(reasons), ""),
            type=group.type,
            note=group.note,
            count=group.count,
            first_seen=group.first_seen,
            last_seen=group.last_seen,
            labels=labels,
            group_key="/".join(group.values),
            members=listed,
            member_count=len(members) + group.dropped_members,
            objects={kind: len(uids) for kind, uids in objects.items()},
            reasons=reasons,
            sequence=group.sequence,
            new_members=new,
            workloads=tuple(sorted(group.workloads)),
        )

    @staticmethod
    def _representative(group: _Group, labels: dict[str, str], members: list[_Key]) -> ObjectRef:
        """The object a group is about: its only object (one member, or several reasons
        about one Pod: the kubelet's Events and a detector's finding), else the workload it
        names."""
        if len(members) == 1:
            return members[0].regarding
        uid = members[0].regarding.uid if members else ""
        if uid and all(k.regarding.uid == uid for k in members):
            return members[0].regarding
        nodes = {k.regarding.uid: k.regarding for k in members if k.regarding.kind == "Node"}
        if len(nodes) == 1:  # a Node and the Pods it took down: the incident is the Node
            return next(iter(nodes.values()))
        kinds = {k.regarding.kind for k in members}
        name = (
            labels.get("owner")
            or labels.get("name")
            or labels.get("regarding.name")
            or (members[0].regarding.name if members else "")
        )
        return ObjectRef(
            kind=kinds.pop() if len(kinds) == 1 else "",
            namespace=labels.get("namespace", group.namespace),
            name=name,
            uid="",
        )

    # -- durable state --------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Everything needed to continue after a restart, as compact JSON (bounded by
        max_keys and max_groups)."""
        groups = [
            [
                list(g.values),
                g.life,
                g.cluster,
                g.namespace,
                g.type,
                g.note,
                g.count,
                g.reasons,
                g.first_seen,
                g.last_seen,
                g.started_at,
                g.active_at,
                g.notified_at,
                g.news_since,
                g.sequence,
                g.dropped_members,
                g.told_objects,
                sorted(g.told_reasons),
                sorted(g.told_workloads) if g.told_workloads is not None else None,
                sorted(g.workloads),
            ]
            for g in self._groups.values()
        ]
        group_index = {values: i for i, values in enumerate(self._groups)}
        # Hundreds of thousands of short-lived rows: the cyclic GC would only slow this down.
        collecting = gc.isenabled()
        gc.disable()
        try:
            keys = [
                _key_row(k, group_index.get(k.group.values) if k.group is not None else None)
                for k in itertools.chain(self._pending.values(), self._members.values())
            ]
        finally:
            if collecting:
                gc.enable()
        return orjson.dumps(
            {
                "version": SNAPSHOT_VERSION,
                "fields": self._fingerprint,
                "groups": groups,
                "keys": keys,
                "evictions": self.evictions,
            }
        )

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot. Raises ValueError (SnapshotMismatch when the
        key or group fields changed since it was written) and leaves the state empty."""
        self._pending.clear()
        self._members.clear()
        self._groups.clear()
        self._deadlines.clear()
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError("aggregation state: unknown format")
        if doc.get("fields") != self._fingerprint:
            raise SnapshotMismatch(
                f"aggregation state was written for dedup.key/group.by {doc.get('fields')}, "
                f"the config now says {self._fingerprint}; starting with empty windows"
            )
        try:
            self._load(doc)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            self._pending.clear()
            self._members.clear()
            self._groups.clear()
            self._deadlines.clear()
            raise ValueError(f"aggregation state is damaged ({exc!r})") from exc

    def _load(self, doc: dict[str, Any]) -> None:
        groups: list[_Group] = []
        legacy: list[_Group] = []  # announced groups from rows without what was told
        for row in doc["groups"]:
            # Rows written before the news rules (16 fields) take what was told from the
            # group as it is: a restart then announces only what comes after it.
            told = row[16:] if len(row) > 16 else None
            (
                values,
                life,
                cluster,
                namespace,
                type_,
                note,
                count,
                reasons,
                first_seen,
                last_seen,
                started_at,
                active_at,
                notified_at,
                news_since,
                sequence,
                dropped_members,
            ) = row[:16]
            group = _Group(
                tuple(values), life, cluster, namespace, type_, note, first_seen, last_seen, 0.0
            )
            group.count = count
            group.reasons = reasons
            group.started_at = started_at
            group.active_at = active_at
            group.notified_at = notified_at
            group.news_since = news_since
            group.sequence = sequence
            group.dropped_members = dropped_members
            if told is not None:
                told_objects, told_reasons, told_workloads, workloads = told
                group.told_objects = told_objects
                group.told_reasons = set(told_reasons)
                group.told_workloads = set(told_workloads) if told_workloads is not None else None
                group.workloads = set(workloads)
            elif notified_at is not None:
                group.told_reasons = set(reasons)
                group.told_workloads = None
                legacy.append(group)
            groups.append(group)
            self._groups[group.values] = group
        for row in doc["keys"]:
            key, group_index = _key_from_row(row)
            if group_index is None:
                if key.rule >= len(self._thresholds):
                    continue  # the rule is gone from the config; the candidate goes too
                self._pending[key.values] = key
            else:
                group = groups[group_index]
                key.group = group
                group.members[key.values] = key
                self._members[key.values] = key
                uid = key.regarding.uid or key.regarding.describe()
                group.objects[uid] = group.objects.get(uid, 0) + 1
        evictions = doc.get("evictions") or {}
        for name in self.evictions:
            self.evictions[name] = int(evictions.get(name, 0))
        for group in legacy:
            group.told_objects = len(group.objects)
        for group in groups:
            self._schedule(group)


def _forget_object(group: _Group, key: _Key) -> None:
    uid = key.regarding.uid or key.regarding.describe()
    left = group.objects.get(uid, 0) - 1
    if left > 0:
        group.objects[uid] = left
    else:
        group.objects.pop(uid, None)


def _key_row(key: _Key, group_index: int | None) -> tuple[Any, ...]:
    ref = key.regarding
    return (
        key.values,
        group_index,
        ref.kind,
        ref.namespace,
        ref.name,
        ref.uid,
        ref.api_version,
        ref.field_path,
        key.reason,
        key.count,
        key.first_seen,
        key.last_seen,
        key.seen_at,
        key.rule,
        key.announced,
        list(key.hits) if key.hits is not None else None,
    )


def _key_from_row(row: list[Any]) -> tuple[_Key, int | None]:
    (values, group_index, *ref, reason, count, first, last, seen_at, rule, announced, hits) = row
    key = _Key(tuple(values), ObjectRef(*ref), reason, first, last, rule, seen_at)
    key.count = count
    key.announced = announced
    key.hits = deque((t, c) for t, c in hits) if hits is not None else None
    key.hits_sum = sum(c for _, c in hits) if hits is not None else 0
    key.id = stable_id(*key.values) if group_index is not None else ""
    return key, group_index


def simulate(
    aggregator: Aggregator, timeline: Iterable[tuple[float, Occurrence]], *, drain: bool = True
) -> Iterator[tuple[float, Alert]]:
    """Feed `(now, occurrence)` pairs in order, ticking at every deadline in between, as the
    daemon's tick task would; yield `(when, alert)`. With `drain`, time then runs on until
    nothing is pending (every group resolved). Used by `replay` and the tests."""
    now: float | None = None
    for at, occ in timeline:
        now = at if now is None else max(now, at)  # a simulated clock never goes back
        deadline = aggregator.next_deadline()
        while deadline is not None and deadline <= now:
            for alert in aggregator.tick(deadline):
                yield deadline, alert
            deadline = aggregator.next_deadline()
        for alert in aggregator.add(occ, now):
            yield now, alert
    if drain:
        deadline = aggregator.next_deadline()
        while deadline is not None:
            for alert in aggregator.tick(deadline):
                yield deadline, alert
            deadline = aggregator.next_deadline()
