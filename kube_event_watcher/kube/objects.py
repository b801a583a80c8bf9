"""The watch-backed cache of Pods and Nodes: what the object watches keep, and how they decode.

A Pod as the API serves it is 5-20 KB of JSON; the cache keeps ~0.5 KB of it. msgspec
decodes only the fields enrichment and the detectors read (everything else is skipped while
parsing, never built) into the pipeline's own frozen facts (`PodFacts`, `NodeFacts`), and
the strings that repeat from Pod to Pod (namespaces, node names, images, container names,
reasons) are interned, as are whole container statuses: a healthy ReplicaSet's containers
are one shared object (bench/bench_object_cache.py, bench/RESULTS.md).

The decoding is strict about types and lenient about absence: every field may be missing or
null; a field of the wrong type refuses the object (`DecodeError`, logged and skipped by the
watch).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Generic, TypeVar

import msgspec

from kube_event_watcher.kube.watching import Resource
from kube_event_watcher.kube.wire import DecodeError, Raw, object_frame_reader
from kube_event_watcher.pipeline.enrich import (
    ContainerFacts,
    NodeFacts,
    NodeProblem,
    OwnerRef,
    PodFacts,
)
from kube_event_watcher.pipeline.normalize import _time_or

F = TypeVar("F", PodFacts, NodeFacts)

# --- the wire: only the fields read --------------------------------------------------------


class _OwnerReference(msgspec.Struct, rename="camel", gc=False):
    kind: str | None = None
    api_version: str | None = None
    name: str | None = None
    controller: bool | None = None


class _Meta(msgspec.Struct, rename="camel"):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    owner_references: list[_OwnerReference] | None = None


class _Waiting(msgspec.Struct, gc=False):
    reason: str | None = None
    message: str | None = None


class _Terminated(msgspec.Struct, rename="camel", gc=False):
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    finished_at: str | None = None


class _Running(msgspec.Struct, gc=False):
    pass


class _State(msgspec.Struct, gc=False):
    waiting: _Waiting | None = None
    running: _Running | None = None
    terminated: _Terminated | None = None


class _ContainerStatus(msgspec.Struct, rename="camel"):
    name: str | None = None
    ready: bool | None = None
    restart_count: int | None = None
    image: str | None = None
    state: _State | None = None
    last_state: _State | None = None


class _Condition(msgspec.Struct, rename="camel", gc=False):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class _PodSpec(msgspec.Struct, rename="camel", gc=False):
    node_name: str | None = None


class _PodStatus(msgspec.Struct, rename="camel"):
    phase: str | None = None
    reason: str | None = None
    qos_class: str | None = None
    conditions: list[_Condition] | None = None
    init_container_statuses: list[_ContainerStatus] | None = None
    container_statuses: list[_ContainerStatus] | None = None


class WirePod(msgspec.Struct):
    metadata: _Meta | None = None
    spec: _PodSpec | None = None
    status: _PodStatus | None = None


class _Taint(msgspec.Struct, gc=False):
    key: str | None = None
    value: str | None = None
    effect: str | None = None


class _NodeSpec(msgspec.Struct):
    unschedulable: bool | None = None
    taints: list[_Taint] | None = None


class _NodeStatus(msgspec.Struct):
    conditions: list[_Condition] | None = None


class WireNode(msgspec.Struct):
    metadata: _Meta | None = None
    spec: _NodeSpec | None = None
    status: _NodeStatus | None = None


_decode_pod = msgspec.json.Decoder(WirePod).decode
_decode_node = msgspec.json.Decoder(WireNode).decode


def decode_pod(data: Raw | bytes) -> WirePod:
    """One Pod's JSON → its slim wire form; raises DecodeError."""
    return _decode_pod(data)


def decode_node(data: Raw | bytes) -> WireNode:
    """One Node's JSON → its slim wire form; raises DecodeError."""
    return _decode_node(data)


def _version(obj: WirePod | WireNode) -> str | None:
    return obj.metadata.resource_version if obj.metadata is not None else None


PODS = Resource(
    api="/api/v1",
    plural="pods",
    rbac="pods",
    decode_item=decode_pod,
    read_frame=object_frame_reader(decode_pod, _version),
)
NODES = Resource(
    api="/api/v1",
    plural="nodes",
    rbac="nodes",
    decode_item=decode_node,
    read_frame=object_frame_reader(decode_node, _version),
    namespaced=False,
)

# --- the wire form → the pipeline's facts, with what repeats shared ------------------------

_intern = sys.intern
_NO_STATE = _State()
_NO_TERMINATION = _Terminated()
# Shared container statuses: bounded, and started over when full (they are only shared, a
# miss costs one more object, never a wrong answer).
_SHARED_MAX = 65_536
MESSAGE_LIMIT = 500


class Interner:
    """Shares equal values between cached objects: strings that repeat from object to object,
    and whole container statuses (frozen, so equal ones are interchangeable)."""

    def __init__(self) -> None:
        self._containers: dict[ContainerFacts, ContainerFacts] = {}
        self._tuples: dict[tuple[ContainerFacts, ...], tuple[ContainerFacts, ...]] = {}

    def containers(self, items: list[ContainerFacts]) -> tuple[ContainerFacts, ...]:
        if not items:
            return ()
        shared = self._containers
        if len(shared) >= _SHARED_MAX:
            shared.clear()
            self._tuples.clear()
        out = tuple(shared.setdefault(c, c) for c in items)
        return self._tuples.setdefault(out, out)


def _s(value: str | None) -> str:
    """A repeating string, interned ("" for absent)."""
    return _intern(value) if value else ""


def _container(status: _ContainerStatus, init: bool) -> ContainerFacts:
    state = status.state or _NO_STATE
    last = status.last_state or _NO_STATE
    waiting = state.waiting
    terminated = state.terminated or last.terminated or _NO_TERMINATION
    if waiting is not None:
        kind = "waiting"
    elif state.running is not None:
        kind = "running"
    elif state.terminated is not None:
        kind = "terminated"
    else:
        kind = "unknown"
    message = (waiting.message or "")[:MESSAGE_LIMIT] if waiting is not None else ""
    return ContainerFacts(
        name=_s(status.name),
        init=init,
        ready=bool(status.ready),
        restart_count=status.restart_count or 0,
        state=_intern(kind),
        waiting_reason=_s(waiting.reason) if waiting is not None else "",
        waiting_message=message,
        last_terminated_reason=_s(terminated.reason),
        exit_code=terminated.exit_code,
        signal=terminated.signal,
        last_finished_at=terminated.finished_at or "",
        image=_s(status.image),
    )


def pod_from_wire(pod: WirePod, interner: Interner) -> PodFacts:
    """The facts enrichment and the detectors read, from a decoded Pod; raises DecodeError
    for a Pod without a namespace, name or uid (nothing could refer to it)."""
    meta = pod.metadata
    if meta is None or not meta.name or not meta.namespace or not meta.uid:
        raise DecodeError("a Pod without metadata.namespace, .name or .uid")
    status = pod.status or _PodStatus()
    containers = [_container(s, True) for s in status.init_container_statuses or ()]
    containers += [_container(s, False) for s in status.container_statuses or ()]
    conditions = tuple(
        (_s(c.type), _s(c.status), _s(c.reason))
        for c in status.conditions or ()
        if c.status != "True"
    )
    controller = None
    for ref in meta.owner_references or ():
        if ref.controller is True:
            controller = OwnerRef(_s(ref.kind), _s(ref.api_version), ref.name or "")
            break
    return PodFacts(
        namespace=_intern(meta.namespace),
        name=meta.name,
        phase=_s(status.phase),
        reason=_s(status.reason),
        node=_s(pod.spec.node_name if pod.spec is not None else None),
        qos=_s(status.qos_class),
        conditions_not_true=conditions,
        containers=interner.containers(containers),
        controller=controller,
        deletion_time=_time_or(meta.deletion_timestamp, None),
        grace_seconds=meta.deletion_grace_period_seconds,
        uid=meta.uid,
    )


_PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


def node_from_wire(node: WireNode) -> NodeFacts:
    """A Node's facts, read the way `pipeline.enrich.node_facts` reads the raw JSON."""
    meta = node.metadata
    if meta is None or not meta.name:
        raise DecodeError("a Node without metadata.name")
    conditions = {c.type: c for c in (node.status.conditions if node.status else None) or ()}
    ready = conditions.get("Ready")
    ready_status = (ready.status if ready is not None else None) or "Unknown"
    details: list[NodeProblem] = []
    if ready_status != "True":
        details.append(_problem("NotReady", ready_status, ready))
    for kind in _PRESSURES:
        condition = conditions.get(kind)
        if condition is not None and condition.status == "True":
            details.append(_problem(kind, "True", condition))
    spec = node.spec or _NodeSpec()
    taints = []
    for taint in spec.taints or ():
        key = f"{taint.key}={taint.value}" if taint.value else str(taint.key)
        taints.append(f"{key}:{taint.effect}")
    return NodeFacts(
        name=meta.name,
        ready=_intern(ready_status),
        ready_reason=_s(ready.reason if ready is not None else None),
        problems=tuple(d.condition for d in details),
        unschedulable=bool(spec.unschedulable),
        taints=tuple(taints),
        uid=meta.uid or "",
        details=tuple(details),
    )


def _problem(kind: str, status: str, condition: _Condition | None) -> NodeProblem:
    if condition is None:
        return NodeProblem(kind, status, "", "", None)
    return NodeProblem(
        kind,
        status,
        condition.reason or "",
        (condition.message or "")[:MESSAGE_LIMIT],
        _time_or(condition.last_transition_time, None),
    )


# --- the store -----------------------------------------------------------------------------


class ObjectStore(Generic[F]):
    """One object watch's current objects by (namespace, name) ("" for cluster-scoped).

    A relist marks and sweeps: objects listed again stay, the rest (deleted while the watch
    was down) go at the end of the list. Until the first list completes `listed` is False,
    and a reader that finds nothing must ask the API instead: absence means nothing yet.
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], F] = {}
        self.listed = False
        self._relisting: set[tuple[str, str]] | None = None

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, namespace: str, name: str) -> F | None:
        return self.objects.get((namespace, name))

    def values(self) -> Iterator[F]:
        return iter(self.objects.values())

    def begin_relist(self) -> None:
        self._relisting = set()

    def put(self, key: tuple[str, str], facts: F) -> F | None:
        """Store `facts`; return what was stored before under `key`."""
        if self._relisting is not None:
            self._relisting.add(key)
        previous = self.objects.get(key)
        self.objects[key] = facts
        return previous

    def remove(self, key: tuple[str, str]) -> F | None:
        return self.objects.pop(key, None)

    def end_relist(self) -> list[F]:
        """Drop what the relist did not list; return it."""
        seen, self._relisting = self._relisting, None
        self.listed = True
        if seen is None:
            return []
        gone = [k for k in self.objects if k not in seen]
        return [self.objects.pop(k) for k in gone]


class ClusterObjects:
    """One cluster's object caches, as enrichment reads them (pipeline.enrich.CachedObjects):
    the Pods of each watched namespace (None: all of them) and the Nodes."""

    def __init__(self) -> None:
        self.pods: dict[str | None, ObjectStore[PodFacts]] = {}
        self.nodes: ObjectStore[NodeFacts] = ObjectStore()

    def pod_store(self, namespace: str | None) -> ObjectStore[PodFacts]:
        return self.pods.setdefault(namespace, ObjectStore())

    def cached_pod(self, namespace: str, name: str) -> PodFacts | None:
        store = self.pods.get(namespace) or self.pods.get(None)
        if store is None or not store.listed:
            return None
        return store.get(namespace, name)

    def cached_node(self, name: str) -> NodeFacts | None:
        return self.nodes.get("", name) if self.nodes.listed else None
