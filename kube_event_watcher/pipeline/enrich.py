"""Enrichment: who is hurting, why, and where. Adds Pod, owner chain, Node and (optionally)
the previous container's last log lines to an alert's `facts`.

The lookups it needs are the `ObjectLookups` protocol below; `kube_event_watcher/kube/lookups.py`
implements it against the API and the daemon hands it in (this module never imports
`kube_event_watcher/kube`). Raw objects are read once into small frozen facts (`PodFacts`,
`OwnerFacts`, `NodeFacts`): that is what the caches keep, so 10k cached Pods cost little memory.

Enrichment never holds an alert back: each alert has a deadline, past which it goes out
with what is known and `facts["enrichment"]` says what is missing. The facts keys are
documented in docs/enrichment.md; an absent key means "not known".
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.pipeline.cache import CacheStats, TtlCache
from kube_event_watcher.pipeline.model import Alert, ObjectRef
from kube_event_watcher.pipeline.normalize import _time_or
from kube_event_watcher.pipeline.redaction import keep_tail, redact_secrets

RawObject = Mapping[str, Any]
"""An API object as decoded JSON."""


class ObjectLookups(Protocol):
    """Reads of single objects from one cluster. `None` means "does not exist" (404);
    anything else that goes wrong raises, with a message fit for `facts["enrichment"]`."""

    async def get_pod(self, namespace: str, name: str) -> RawObject | None: ...

    async def get_owner(
        self, kind: str, api_version: str, namespace: str, name: str
    ) -> RawObject | None:
        """A ReplicaSet, Deployment, StatefulSet, DaemonSet, Job or CronJob, or a custom
        resource of a group in `enrichment.owner_groups` (found by discovery)."""
        ...

    async def get_node(self, name: str) -> RawObject | None: ...

    async def get_namespace(self, name: str) -> RawObject | None: ...

    async def get_previous_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str | None:
        """The last lines of the container's previous run (None if it had none)."""
        ...


class CachedObjects(Protocol):
    """A watch-backed cache of one cluster's Pods and Nodes (`enrichment.watch_objects`, the
    detectors). None means "not known here" (not listed yet, or not in it): ask the API."""

    def cached_pod(self, namespace: str, name: str) -> PodFacts | None: ...

    def cached_node(self, name: str) -> NodeFacts | None: ...


OWNER_KINDS = frozenset({"ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})
# Kinds (and their API group) that may be owned by another controller we know how to look
# up: a ReplicaSet by a Deployment, a Job by a CronJob. Other owners end the chain.
_OWNED_KINDS = {"ReplicaSet": "apps", "Job": "batch"}


def api_group(api_version: str) -> str:
    """The group of an apiVersion: `argoproj.io/v1alpha1` → `argoproj.io`, `v1` → ""."""
    return api_version.rpartition("/")[0]


def _followed(ref: OwnerRef, custom_groups: frozenset[str]) -> bool:
    """Whether the chain fetches `ref` to find its own controller: a ReplicaSet or Job (a
    Deployment's or CronJob's), or a resource of a group the config names (`owner_groups`)."""
    group = api_group(ref.api_version)
    if group in custom_groups:
        return True
    return ref.kind in _OWNED_KINDS and (not ref.api_version or group == _OWNED_KINDS[ref.kind])


# Pod → ReplicaSet → Rollout → an operator's resource above it, with room to spare; a
# longer chain (or an ownership loop) is cut here.
_MAX_CHAIN = 6

# --- facts read from raw objects (pure) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """An ownerReference with controller=true."""

    kind: str
    api_version: str
    name: str

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


def controller_ref(obj: RawObject) -> OwnerRef | None:
    """The object's managing controller: the ownerReference with `controller: true`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    for ref in refs:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return OwnerRef(
                str(ref.get("kind") or ""), str(ref.get("apiVersion") or ""), str(ref.get("name"))
            )
    return None


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    """One container's status. `last_*` describe its most recent termination: the current
    state when it is terminated now, else `lastState`."""

    name: str
    init: bool
    ready: bool
    restart_count: int
    state: str  # waiting | running | terminated | unknown
    waiting_reason: str = ""
    waiting_message: str = ""
    last_terminated_reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    last_finished_at: str = ""
    image: str = ""

    @property
    def has_terminated(self) -> bool:
        return self.exit_code is not None or bool(self.last_terminated_reason)


def container_facts(status: RawObject, init: bool = False) -> ContainerFacts:
    state = status.get("state") or {}
    last = status.get("lastState") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or last.get("terminated") or {}
    kind = next((k for k in ("waiting", "running", "terminated") if k in state), "unknown")
    exit_code = terminated.get("exitCode")
    signal = terminated.get("signal")
    return ContainerFacts(
        name=str(status.get("name") or ""),
        init=init,
        ready=bool(status.get("ready")),
        restart_count=int(status.get("restartCount") or 0),
        state=kind,
        waiting_reason=str(waiting.get("reason") or ""),
        waiting_message=str(waiting.get("message") or "")[:500],
        last_terminated_reason=str(terminated.get("reason") or ""),
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        signal=int(signal) if isinstance(signal, int) else None,
        last_finished_at=str(terminated.get("finishedAt") or ""),
        image=str(status.get("image") or ""),
    )


@dataclass(frozen=True, slots=True)
class PodFacts:
    namespace: str
    name: str
    phase: str
    reason: str
    node: str
    qos: str
    # Conditions that are not True, as (type, status, reason).
    conditions_not_true: tuple[tuple[str, str, str], ...]
    containers: tuple[ContainerFacts, ...]
    controller: OwnerRef | None
    deletion_time: float | None
    grace_seconds: int | None
    uid: str = ""

    def container(self, name: str) -> ContainerFacts | None:
        return next((c for c in self.containers if c.name == name), None)

    def terminating_overdue(self, now: float) -> float | None:
        """Seconds past the end of its grace period, if the Pod is being deleted.

        The API sets deletionTimestamp to the request time plus the grace period, so a Pod
        still there after it is stuck Terminating (a finalizer, or a kubelet that is gone)."""
        if self.deletion_time is None:
            return None
        return now - self.deletion_time


def pod_facts(pod: RawObject) -> PodFacts:
    """The facts alerts use, read from a Pod; everything else is dropped."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = [
        *(container_facts(s, init=True) for s in status.get("initContainerStatuses") or []),
        *(container_facts(s) for s in status.get("containerStatuses") or []),
    ]
    conditions = tuple(
        (str(c.get("type") or ""), str(c.get("status") or ""), str(c.get("reason") or ""))
        for c in status.get("conditions") or []
        if c.get("status") != "True"
    )
    grace = meta.get("deletionGracePeriodSeconds")
    return PodFacts(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        phase=str(status.get("phase") or ""),
        reason=str(status.get("reason") or ""),
        node=str(spec.get("nodeName") or ""),
        qos=str(status.get("qosClass") or ""),
        conditions_not_true=conditions,
        containers=tuple(containers),
        controller=controller_ref(pod),
        deletion_time=_time_or(meta.get("deletionTimestamp"), None),
        grace_seconds=int(grace) if isinstance(grace, int) else None,
        uid=str(meta.get("uid") or ""),
    )


_FIELD_PATH_CONTAINER = re.compile(
    r"^spec\.(?:initContainers|containers|ephemeralContainers)\{(.+)\}"
)
# Waiting reasons that are normal steps of starting, not trouble.
_BENIGN_WAITING = frozenset({"", "ContainerCreating", "PodInitializing"})


def pick_container(pod: PodFacts, field_path: str = "") -> ContainerFacts | None:
    """The container an alert is about: the one the event names in its fieldPath, else the
    one in the worst shape (waiting with a reason, then failed, then most restarted)."""
    named = _FIELD_PATH_CONTAINER.match(field_path or "")
    if named:
        found = pod.container(named.group(1))
        if found is not None:
            return found
    if not pod.containers:
        return None

    def trouble(c: ContainerFacts) -> tuple[int, int, int]:
        return (
            int(c.state == "waiting" and c.waiting_reason not in _BENIGN_WAITING),
            int(c.exit_code not in (None, 0)),
            c.restart_count,
        )

    return max(pod.containers, key=trouble)


@dataclass(frozen=True, slots=True)
class OwnerFacts:
    kind: str
    namespace: str
    name: str
    controller: OwnerRef | None


def owner_facts(obj: RawObject) -> OwnerFacts:
    meta = obj.get("metadata") or {}
    return OwnerFacts(
        kind=str(obj.get("kind") or ""),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        controller=controller_ref(obj),
    )


_PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


class NodeProblem(NamedTuple):
    """One of a Node's problems with its details: the condition ("NotReady" for a Ready
    condition that is not True), its reason and message, and since when (epoch seconds)."""

    condition: str
    status: str
    reason: str
    message: str
    since: float | None


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    ready: str  # "True" | "False" | "Unknown" (the Ready condition's status)
    ready_reason: str
    problems: tuple[str, ...]  # "NotReady" and pressure conditions that are True
    unschedulable: bool
    taints: tuple[str, ...]  # "key=value:Effect"
    uid: str = ""
    details: tuple[NodeProblem, ...] = ()  # one per `problems`, in the same order


def node_facts(node: RawObject) -> NodeFacts:
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    conditions = {str(c.get("type")): c for c in (node.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") or {}
    ready_status = str(ready.get("status") or "Unknown")
    problems = [] if ready_status == "True" else ["NotReady"]
    problems += [t for t in _PRESSURE if (conditions.get(t) or {}).get("status") == "True"]
    details = []
    for problem in problems:
        c = conditions.get("Ready" if problem == "NotReady" else problem) or {}
        details.append(
            NodeProblem(
                problem,
                str(c.get("status") or "Unknown"),
                str(c.get("reason") or ""),
                str(c.get("message") or "")[:500],
                _time_or(c.get("lastTransitionTime"), None),
            )
        )
    taints = []
    for taint in spec.get("taints") or []:
        value = taint.get("value")
        key = f"{taint.get('key')}={value}" if value else str(taint.get("key"))
        taints.append(f"{key}:{taint.get('effect')}")
    return NodeFacts(
        name=str(meta.get("name") or ""),
        ready=ready_status,
        ready_reason=str(ready.get("reason") or ""),
        problems=tuple(problems),
        unschedulable=bool(spec.get("unschedulable")),
        taints=tuple(taints),
        uid=str(meta.get("uid") or ""),
        details=tuple(details),
    )


# Alert reasons and container states whose previous run's log explains the alert.
CRASH_REASONS = frozenset({"BackOff", "CrashLoopBackOff", "Error", "OOMKilled", "OOMKilling"})
_CRASH_TERMINATIONS = frozenset({"Error", "OOMKilled", "ContainerCannotRun", "StartError"})


def wants_log_tail(alert_reason: str, container: ContainerFacts) -> bool:
    """Whether the previous container's log is worth fetching: it must have run and ended
    (else `previous=true` has nothing), and the alert or its state must be a crash, not an
    image pull back-off (which shares the event reason BackOff)."""
    if container.restart_count < 1 or not container.has_terminated:
        return False
    if container.waiting_reason in ("ImagePullBackOff", "ErrImagePull"):
        return False
    return (
        container.waiting_reason == "CrashLoopBackOff"
        or container.last_terminated_reason in _CRASH_TERMINATIONS
        or alert_reason in CRASH_REASONS
    )


# --- facts as the flat mapping alerts carry -----------------------------------------------


def pod_fact_map(pod: PodFacts, container: ContainerFacts | None, now: float) -> dict[str, Any]:
    facts: dict[str, Any] = {"pod_phase": pod.phase, "pod_qos": pod.qos}
    if pod.reason:
        facts["pod_reason"] = pod.reason
    if pod.node:
        facts["node"] = pod.node
    facts["pod_conditions"] = [
        f"{kind}={status}" + (f" ({reason})" if reason else "")
        for kind, status, reason in pod.conditions_not_true
    ]
    overdue = pod.terminating_overdue(now)
    facts["pod_deleting"] = overdue is not None
    if overdue is not None:
        facts["pod_terminating_stuck"] = overdue > 0
        if overdue > 0:
            facts["pod_terminating_overdue_seconds"] = int(overdue)
    if container is not None:
        facts["container"] = container.name
        facts["container_state"] = container.state
        facts["restart_count"] = container.restart_count
        if container.waiting_reason:
            facts["waiting_reason"] = container.waiting_reason
        if container.waiting_message:
            facts["waiting_message"] = container.waiting_message
        if container.last_terminated_reason:
            facts["last_terminated_reason"] = container.last_terminated_reason
        if container.exit_code is not None:
            facts["exit_code"] = container.exit_code
        if container.signal is not None:
            facts["signal"] = container.signal
    return facts


def owner_fact_map(chain: Iterable[OwnerRef]) -> dict[str, Any]:
    """`owner_*` and `workload` name the top of the chain (Deployment, not ReplicaSet): that
    is what a team owns and what routes match on."""
    links = list(chain)
    if not links:
        return {}
    top = links[-1]
    return {
        "owner_kind": top.kind,
        "owner_name": top.name,
        "workload": top.describe(),
        "owner_chain": [link.describe() for link in links],
    }


def node_fact_map(node: NodeFacts) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "node": node.name,
        "node_ready": node.ready,
        "node_conditions": list(node.problems),
        "node_unschedulable": node.unschedulable,
        "node_taints": list(node.taints),
    }
    if node.ready != "True" and node.ready_reason:
        facts["node_ready_reason"] = node.ready_reason
    return facts


# --- the stage ----------------------------------------------------------------------------

Sleep = Callable[[float], Awaitable[None]]
LOG_CACHE_ENTRIES = 1_000
# How long an edge's facts about an object stand in for a lookup (fleet mode): each new
# occurrence of the object brings them afresh.
EDGE_FACTS_TTL = 600.0
LOG_READ_LIMIT = 256 * 1024


class _Progress:
    """What an enrichment is waiting for right now, to say so when the deadline passes."""

    def __init__(self) -> None:
        self.pending: dict[str, int] = {}
        self.problems: list[str] = []

    async def fetch(self, what: str, lookup: Awaitable[Any]) -> tuple[bool, Any]:
        """(True, answer), or (False, None) with the failure noted as a problem."""
        try:
            return True, await self.step(what, lookup)
        except Exception as exc:
            self.problems.append(f"{what}: {_short(exc)}")
            return False, None

    async def step(self, what: str, lookup: Awaitable[Any]) -> Any:
        self.pending[what] = self.pending.get(what, 0) + 1
        try:
            return await lookup
        finally:
            self.pending[what] -= 1
            if not self.pending[what]:
                del self.pending[what]


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


class Enricher:
    """Adds facts to alerts. One per daemon; `lookups` maps cluster name to its API access.

    `enrich` returns a new Alert within `deadline` seconds (plus scheduling noise), however
    slow the API is. At most `concurrency` alerts look things up at once; waiting for a
    slot counts against the deadline. `sleep` and `clock` are injected so tests drive
    the deadline and the caches' TTLs without waiting.
    """

    def __init__(
        self,
        lookups: Mapping[str, ObjectLookups],
        config: EnrichmentConfig,
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.lookups = dict(lookups)
        # Per cluster, when its object watches run: Pods and Nodes are read there first.
        self.objects: dict[str, CachedObjects] = {}
        self.from_watch = 0  # Pods and Nodes answered by the watch-backed cache
        self.config = config
        self.clock = clock
        self._sleep = sleep
        self._custom_groups = frozenset(config.owner_groups)
        negative = config.negative_ttl
        self.pods: TtlCache[tuple[str, str, str], PodFacts] = TtlCache(
            "pods",
            ttl=config.pods.ttl,
            max_entries=config.pods.max_entries,
            negative_ttl=negative,
            clock=clock,
        )
        self.owners: TtlCache[tuple[str, str, str, str], OwnerFacts] = TtlCache(
            "owners",
            ttl=config.owners.ttl,
            max_entries=config.owners.max_entries,
            negative_ttl=negative,
            clock=clock,
        )
        self.nodes: TtlCache[tuple[str, str], NodeFacts] = TtlCache(
            "nodes",
            ttl=config.nodes.ttl,
            max_entries=config.nodes.max_entries,
            negative_ttl=negative,
            clock=clock,
        )
        # What edges said about objects of clusters this instance cannot reach (fleet mode):
        # kept as long as a Pod's facts, as many as Pods.
        self.edge_facts: TtlCache[tuple[str, str], Mapping[str, Any]] = TtlCache(
            "edge_facts",
            ttl=EDGE_FACTS_TTL,
            max_entries=config.pods.max_entries,
            negative_ttl=0.0,
            clock=clock,
        )
        self.namespaces: TtlCache[tuple[str, str], dict[str, str]] = TtlCache(
            "namespaces",
            ttl=config.namespaces.ttl,
            max_entries=config.namespaces.max_entries,
            negative_ttl=negative,
            clock=clock,
        )
        # The previous run's log for a given restart count never changes; keyed by it.
        self.logs: TtlCache[tuple[str, str, str, str, int], str] = TtlCache(
            "logs",
            ttl=config.pods.ttl,
            max_entries=LOG_CACHE_ENTRIES,
            negative_ttl=negative,
            clock=clock,
        )
        self._slots = asyncio.Semaphore(config.api_budget.concurrency)
        self.enriched = 0
        self.partial = 0

    def remember_edge_facts(
        self, cluster: str, regarding: ObjectRef, facts: Mapping[str, Any]
    ) -> None:
        """A fleet's central instance: the facts an edge enriched an occurrence with, for
        the alerts of a cluster this instance has no API access to."""
        self.edge_facts.put((cluster, regarding.uid or regarding.describe()), facts)

    def stats(self) -> list[CacheStats]:
        return [cache.stats() for cache in self._caches()]

    def _caches(self) -> tuple[TtlCache[Any, Any], ...]:
        return (self.pods, self.owners, self.nodes, self.namespaces, self.logs)

    async def close(self) -> None:
        for cache in self._caches():
            await cache.close()

    async def enrich_all(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Enrich several alerts concurrently (a group flush); same order out."""
        batch = list(alerts)
        if not self.config.enabled:
            return batch  # no task per alert for nothing to do
        if len(batch) == 1:
            return [await self.enrich(batch[0])]
        return list(await asyncio.gather(*(self.enrich(a) for a in batch)))

    async def enrich(self, alert: Alert) -> Alert:
        """`alert` with `facts` filled in as far as the deadline allows."""
        if not self.config.enabled:
            return alert
        lookups = self.lookups.get(alert.cluster)
        if lookups is None:
            ref = alert.regarding
            found, known = self.edge_facts.peek((alert.cluster, ref.uid or ref.describe()))
            if found and known is not None:
                told = dict(known)
                said = told.pop("enrichment", "complete")
                return self._with(alert, told, f"by the edge of cluster {alert.cluster}: {said}")
            return self._with(alert, {}, f"skipped: no API access for cluster {alert.cluster}")
        facts: dict[str, Any] = {}
        progress = _Progress()
        deadline = self.config.api_budget.deadline
        work = asyncio.ensure_future(self._gather(lookups, alert, facts, progress))
        timer = asyncio.ensure_future(self._sleep(deadline))
        waiting: list[str] = []
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not work.done():
                waiting = sorted(progress.pending)  # before cancelling clears it
                work.cancel()
            await asyncio.gather(work, timer, return_exceptions=True)
        if work.cancelled():
            pending = ", ".join(waiting) or "a free enrichment slot"
            status = f"partial: deadline {deadline:g}s passed waiting for {pending}"
            if progress.problems:
                status += "; " + "; ".join(progress.problems)
        elif work.exception() is not None:  # a bug here must not lose the alert
            status = f"partial: enrichment failed: {_short(work.exception())}"  # type: ignore[arg-type]
        else:
            status = work.result()
        return self._with(alert, facts, status)

    def _with(self, alert: Alert, facts: dict[str, Any], status: str) -> Alert:
        self.enriched += 1
        if status.startswith("partial"):
            self.partial += 1
        return dataclasses.replace(alert, facts={**alert.facts, **facts, "enrichment": status})

    async def _gather(
        self, lookups: ObjectLookups, alert: Alert, facts: dict[str, Any], progress: _Progress
    ) -> str:
        ref = alert.regarding
        namespace = alert.namespace or ref.namespace
        async with self._slots:
            labels = None
            if self.config.namespace_labels and namespace:
                labels = self._namespace(lookups, alert.cluster, namespace, facts, progress)
            if ref.kind == "Pod":
                work = self._pod(lookups, alert, facts, progress)
            elif ref.kind == "Node":
                work = self._node(lookups, alert.cluster, ref.name, facts, progress)
            elif ref.kind in OWNER_KINDS or api_group(ref.api_version) in self._custom_groups:
                start = OwnerRef(ref.kind, ref.api_version, ref.name)
                work = self._owners(lookups, alert.cluster, ref.namespace, start, facts, progress)
            else:
                if labels is not None:
                    await labels
                return f"skipped: no lookups for kind {ref.kind or '?'}"
            await (asyncio.gather(work, labels) if labels is not None else work)
        return "partial: " + "; ".join(progress.problems) if progress.problems else "complete"

    async def _namespace(
        self,
        lookups: ObjectLookups,
        cluster: str,
        name: str,
        facts: dict[str, Any],
        progress: _Progress,
    ) -> None:
        async def load() -> dict[str, str] | None:
            raw = await lookups.get_namespace(name)
            if raw is None:
                return None
            labels = (raw.get("metadata") or {}).get("labels") or {}
            return {str(k): str(v) for k, v in labels.items()}

        what = f"Namespace {name}"
        ok, labels = await progress.fetch(what, self.namespaces.get((cluster, name), load))
        if not ok:
            return
        if labels is None:
            progress.problems.append(f"{what} not found")
            return
        facts["namespace_labels"] = labels

    async def _pod(
        self, lookups: ObjectLookups, alert: Alert, facts: dict[str, Any], progress: _Progress
    ) -> None:
        ref = alert.regarding
        key = (alert.cluster, ref.namespace, ref.name)

        async def load() -> PodFacts | None:
            raw = await lookups.get_pod(ref.namespace, ref.name)
            return pod_facts(raw) if raw is not None else None

        what = f"Pod {ref.namespace}/{ref.name}"
        watched = self.objects.get(alert.cluster)
        pod = watched.cached_pod(ref.namespace, ref.name) if watched is not None else None
        if pod is not None:
            self.from_watch += 1
        else:
            ok, pod = await progress.fetch(what, self.pods.get(key, load))
            if not ok:
                return
        if pod is None:
            progress.problems.append(f"{what} not found (deleted?)")
            return
        container = pick_container(pod, ref.field_path)
        facts.update(pod_fact_map(pod, container, self.clock.now()))
        parts = []
        if pod.controller is not None:
            parts.append(
                self._owners(lookups, alert.cluster, pod.namespace, pod.controller, facts, progress)
            )
        else:
            facts["workload"] = f"Pod/{pod.name}"
        if pod.node:
            parts.append(self._node(lookups, alert.cluster, pod.node, facts, progress))
        if (
            self.config.log_tail.enabled
            and alert.status == "firing"
            and container is not None
            and wants_log_tail(alert.reason, container)
        ):
            parts.append(self._log_tail(lookups, alert.cluster, pod, container, facts, progress))
        await asyncio.gather(*parts)

    async def _owners(
        self,
        lookups: ObjectLookups,
        cluster: str,
        namespace: str,
        start: OwnerRef,
        facts: dict[str, Any],
        progress: _Progress,
    ) -> None:
        """Follow controller ownerReferences up from `start` (ReplicaSet → Deployment,
        Job → CronJob, and through custom resources of `owner_groups`). A kind we do not
        look up (another operator's resource) ends the chain and is named as the workload
        without a request."""
        chain = [start]
        current = start
        # What is known so far goes into the facts at once, in case the deadline passes.
        facts.update(owner_fact_map(chain))
        try:
            while _followed(current, self._custom_groups) and len(chain) < _MAX_CHAIN:
                owner = await self._owner(lookups, cluster, namespace, current, progress)
                if owner is None:
                    progress.problems.append(f"{current.kind} {namespace}/{current.name} not found")
                    break
                if owner.controller is None:
                    break
                current = owner.controller
                chain.append(current)
                facts.update(owner_fact_map(chain))
        except Exception as exc:
            progress.problems.append(f"{current.kind} {namespace}/{current.name}: {_short(exc)}")

    async def _owner(
        self,
        lookups: ObjectLookups,
        cluster: str,
        namespace: str,
        ref: OwnerRef,
        progress: _Progress,
    ) -> OwnerFacts | None:
        async def load() -> OwnerFacts | None:
            raw = await lookups.get_owner(ref.kind, ref.api_version, namespace, ref.name)
            return owner_facts(raw) if raw is not None else None

        # The group is part of the key: two operators may both define a kind "Application".
        key = (cluster, f"{ref.kind}.{api_group(ref.api_version)}", namespace, ref.name)
        result: OwnerFacts | None = await progress.step(
            f"{ref.kind} {namespace}/{ref.name}", self.owners.get(key, load)
        )
        return result

    async def _node(
        self,
        lookups: ObjectLookups,
        cluster: str,
        name: str,
        facts: dict[str, Any],
        progress: _Progress,
    ) -> None:
        async def load() -> NodeFacts | None:
            raw = await lookups.get_node(name)
            return node_facts(raw) if raw is not None else None

        what = f"Node {name}"
        watched = self.objects.get(cluster)
        node = watched.cached_node(name) if watched is not None else None
        if node is not None:
            self.from_watch += 1
        else:
            ok, node = await progress.fetch(what, self.nodes.get((cluster, name), load))
            if not ok:
                return
        if node is None:
            facts["node"] = name
            progress.problems.append(f"{what} not found")
            return
        facts.update(node_fact_map(node))

    async def _log_tail(
        self,
        lookups: ObjectLookups,
        cluster: str,
        pod: PodFacts,
        container: ContainerFacts,
        facts: dict[str, Any],
        progress: _Progress,
    ) -> None:
        settings = self.config.log_tail
        # limitBytes counts from the start of the tail and cuts its *end* off, the part that
        # says why it crashed: ask for plenty (tailLines bounds it anyway) and keep the end here.
        limit = max(4 * settings.max_bytes, LOG_READ_LIMIT)

        async def load() -> str | None:
            text = await lookups.get_previous_log(
                pod.namespace, pod.name, container.name, settings.lines, limit
            )
            if text is None:
                return None
            return keep_tail(redact_secrets(text), settings.max_bytes)

        key = (cluster, pod.namespace, pod.name, container.name, container.restart_count)
        what = f"log of {pod.namespace}/{pod.name}/{container.name}"
        ok, text = await progress.fetch(what, self.logs.get(key, load))
        if ok and text:
            facts["log_tail"] = text
        elif ok:
            # Asked for and answered, but no lines: say why rather than leave it out.
            facts["log_tail_unavailable"] = (
                "the previous run wrote no log"
                if text == ""
                else "the kubelet has no log of the previous run (400 from pods/log)"
            )
