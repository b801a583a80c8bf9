"""Pod and Node state detectors: what an object's status shows, as Occurrences.

Pure logic: facts and `now` in, Occurrences out (no I/O, no clock of its own). The daemon
feeds each object watch's changes to one `Detector` with that watch's own seen-ledger, saved
in the checkpoint like an event scope's. A finding has a stable synthetic uid (uuid5 of the
object's uid and what was found) and a series-like count (the container's restart count),
so the ledger makes it exactly-once across relists and restarts, exactly as for an Event.

The occurrence is *about* the Pod or Node (`regarding`), like the kubelet's Events about it,
so aggregation puts both in the same incident group. What is found (docs/detectors.md):

- `CrashLoopBackOff`: a container waiting in CrashLoopBackOff; counts its restarts.
- `OOMKilled`: a container's most recent termination was OOMKilled (or exit code 137, the
  kernel's SIGKILL); once per termination (the restart count tells them apart).
- `ImagePullBackOff` / `ErrImagePull`: a container waiting for an image it cannot pull;
  once per container and image (the two reasons alternate while it retries).
- `PodStuckTerminating`: a Pod still there `terminating_after` past its deletionTimestamp
  (the end of its grace period): a finalizer, or a kubelet that is gone. Needs time to
  pass, so `tick(now)` checks it.
- `NodeNotReady`, `NodeMemoryPressure`, `NodeDiskPressure`, `NodePIDPressure`: a Node
  condition bad for `node_condition_after` (a joining Node is NotReady until its network is
  up: that is not an incident); once per time it turns bad. `tick(now)` checks it too.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Iterable, Mapping
from datetime import UTC, datetime

from kube_event_watcher.config.detectors import DetectorsConfig
from kube_event_watcher.pipeline.enrich import ContainerFacts, NodeFacts, PodFacts
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import ObjectRef, Occurrence

REPORTING_CONTROLLER = "kube-event-watcher/detector"
# The uuid5 namespace of every synthetic uid (any fixed UUID would do; never change it: the
# checkpoints' ledgers hold uids made with it).
_NAMESPACE = uuid.UUID("6b2c4c0e-9a57-4d6e-8f1e-5d0c7a3b9e21")
_IMAGE_PULL = frozenset({"ImagePullBackOff", "ErrImagePull"})
OOM_EXIT_CODE = 137  # 128 + SIGKILL: what the kernel's OOM killer leaves


def synthetic_uid(*parts: str) -> str:
    """A stable uid for a finding: the same finding always has the same one."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _oom(c: ContainerFacts) -> bool:
    return c.last_terminated_reason == "OOMKilled" or c.exit_code == OOM_EXIT_CODE


def _terminations(c: ContainerFacts) -> int:
    """How many times the container has ended: its restarts, plus one while it is
    terminated now (not restarted yet: restartPolicy Never, or between restarts)."""
    return c.restart_count + (1 if c.state == "terminated" else 0)


def _container_ref(pod: PodFacts, c: ContainerFacts) -> ObjectRef:
    kind = "initContainers" if c.init else "containers"
    return ObjectRef("Pod", pod.namespace, pod.name, pod.uid, "v1", f"spec.{kind}{{{c.name}}}")


class Finding:
    """One thing found, before the ledger says whether it is new."""

    __slots__ = ("count", "note", "reason", "regarding", "since", "total", "uid")

    def __init__(
        self,
        uid: str,
        total: int,
        reason: str,
        note: str,
        regarding: ObjectRef,
        since: float | None = None,
        count: int | None = None,
    ) -> None:
        self.uid = uid
        self.total = total
        self.reason = reason
        self.note = note
        self.regarding = regarding
        self.since = since
        self.count = count  # None: the ledger's increment; else at most this many

    def __repr__(self) -> str:
        return f"Finding({self.reason} {self.regarding.describe()} total={self.total})"


def pod_findings(pod: PodFacts, terminating_after: float, now: float) -> list[Finding]:
    """Everything wrong with `pod` now. Healthy containers (running, never restarted) cost
    nothing: a relist of 100k Pods computes uids only for the troubled ones."""
    out: list[Finding] = []
    for c in pod.containers:
        if not c.restart_count and c.state == "running":
            continue
        ref = _container_ref(pod, c)
        if c.waiting_reason == "CrashLoopBackOff" and c.restart_count:
            why = f", last exit code {c.exit_code}" if c.exit_code is not None else ""
            why += f" ({c.last_terminated_reason})" if c.last_terminated_reason else ""
            out.append(
                Finding(
                    synthetic_uid(pod.uid, c.name, "CrashLoopBackOff"),
                    c.restart_count,
                    "CrashLoopBackOff",
                    f"container {c.name} is crash-looping: restarted {c.restart_count} "
                    f"times{why}; {c.waiting_message or 'waiting CrashLoopBackOff'}",
                    ref,
                )
            )
        if _oom(c) and _terminations(c):
            code = f"exit code {c.exit_code}" if c.exit_code is not None else "no exit code"
            out.append(
                Finding(
                    synthetic_uid(pod.uid, c.name, "OOMKilled"),
                    _terminations(c),
                    "OOMKilled",
                    f"container {c.name} was killed: {c.last_terminated_reason or 'SIGKILL'} "
                    f"({code}), restart count {c.restart_count}",
                    ref,
                    count=1,  # one termination observed (the restarts may have other causes)
                )
            )
        if c.waiting_reason in _IMAGE_PULL:
            image = c.image or "?"
            out.append(
                Finding(
                    synthetic_uid(pod.uid, c.name, "ImagePull", image),
                    1,
                    c.waiting_reason,
                    f"container {c.name} cannot pull image {image}: "
                    f"{c.waiting_message or c.waiting_reason}",
                    ref,
                )
            )
    stuck = terminating_stuck(pod, terminating_after, now)
    if stuck is not None:
        out.append(stuck)
    return out


def terminating_stuck(pod: PodFacts, after: float, now: float) -> Finding | None:
    """A finding when `pod` is still there `after` seconds past its deletionTimestamp."""
    deadline = pod.deletion_time
    if deadline is None or now < deadline + after:
        return None
    overdue = int(now - deadline)
    return Finding(
        synthetic_uid(pod.uid, "PodStuckTerminating"),
        1,
        "PodStuckTerminating",
        f"Pod is stuck Terminating: deleted with its grace period ending {_stamp(deadline)}, "
        f"still there {overdue}s later (a finalizer, or its node's kubelet is gone)",
        ObjectRef("Pod", pod.namespace, pod.name, pod.uid, "v1", ""),
        since=deadline,
    )


def node_findings(
    node: NodeFacts,
    conditions: Iterable[str],
    after: float = 0.0,
    now: float = 0.0,
    first_seen: Mapping[str, float] | None = None,
    known: Container[str] = (),
) -> list[Finding]:
    """A finding per watched condition bad for at least `after` seconds at `now`: since its
    lastTransitionTime, or (without one) since `first_seen[uid]`, when the caller first saw
    it bad (absent there: not due yet). A `known` uid (already reported) is due at once."""
    wanted = set(conditions)
    out = []
    for problem in node.details:
        if problem.condition not in wanted:
            continue
        reason = "Node" + problem.condition
        uid = synthetic_uid(node.uid or node.name, reason)
        since = problem.since
        if since is None and first_seen is not None:
            since = first_seen.get(uid)
        if after and (since is None or now - since < after) and uid not in known:
            continue
        detail = f" ({problem.reason})" if problem.reason else ""
        message = f": {problem.message}" if problem.message else ""
        state = "Ready" if problem.condition == "NotReady" else problem.condition
        out.append(
            Finding(
                uid,
                1,
                reason,
                f"Node {node.name} {state}={problem.status}{detail}{message}",
                ObjectRef("Node", "", node.name, node.uid, "v1", ""),
                since=problem.since,
            )
        )
    return out


class Detector:
    """One object watch's detectors, with its ledger: object changes in, new Occurrences
    out. `baseline` (a first start without a checkpoint, unless `report_existing`) records
    findings in the ledger without reporting them, as the event source skips history."""

    def __init__(
        self, cluster: str, ledger: SeenLedger, config: DetectorsConfig, baseline: bool = False
    ) -> None:
        self.cluster = cluster
        self.ledger = ledger
        self.config = config
        self.baseline = baseline
        # Pods being deleted, by (namespace, name), and Nodes with a watched condition bad
        # (with when each was first seen bad, for conditions without a transition time):
        # what `tick` looks at, not every object.
        self.terminating: dict[tuple[str, str], PodFacts] = {}
        self.sick_nodes: dict[str, NodeFacts] = {}
        self._bad_since: dict[str, float] = {}
        self.findings: dict[str, int] = {}  # reported, by reason (metrics)
        # The ledger changed since the caller last looked (a checkpoint is due); a change
        # that finds nothing new leaves it alone, so a busy cluster costs no state writes.
        self.changed = False

    # -- Pods -----------------------------------------------------------------------------

    def pod_changed(self, old: PodFacts | None, new: PodFacts, now: float) -> list[Occurrence]:
        """`new` is the Pod now, `old` what the cache held before (None: first seen)."""
        key = (new.namespace, new.name)
        if new.deletion_time is not None:
            self.terminating[key] = new
        else:
            self.terminating.pop(key, None)
        findings = pod_findings(new, self.config.terminating_after, now)
        found = {f.uid for f in findings}
        if old is not None and any(c.waiting_reason in _IMAGE_PULL for c in old.containers):
            # A pull that works now clears its finding: a later failure is a new one.
            for before in pod_findings(old, self.config.terminating_after, now):
                if before.reason in _IMAGE_PULL and before.uid not in found:
                    self._forget(before.uid)
        self._keep_counted(new, found)
        return self._report(findings, now)

    def _keep_counted(self, pod: PodFacts, found: set[str]) -> None:
        """Crash-loop and OOM entries count restarts: they live as long as the Pod does, so
        a container that is running again between two crashes (and a relist that lists it
        then) does not make the next crash look like the first."""
        ledger = self.ledger
        for c in pod.containers:
            if not c.restart_count:
                continue
            for reason in ("CrashLoopBackOff", "OOMKilled"):
                uid = synthetic_uid(pod.uid, c.name, reason)
                if uid in found:
                    continue
                seen = ledger.seen_count(uid)
                if seen is not None:
                    ledger.observe(uid, seen)  # marks it as still there during a relist

    def pod_deleted(self, old: PodFacts) -> None:
        """The Pod is gone: its entries go (a Pod of the same name has another uid)."""
        self.terminating.pop((old.namespace, old.name), None)
        forget = self._forget
        for c in old.containers:
            forget(synthetic_uid(old.uid, c.name, "CrashLoopBackOff"))
            forget(synthetic_uid(old.uid, c.name, "OOMKilled"))
            if c.image:
                forget(synthetic_uid(old.uid, c.name, "ImagePull", c.image))
        forget(synthetic_uid(old.uid, "PodStuckTerminating"))

    def tick(self, now: float) -> list[Occurrence]:
        """The time-based checks: Pods whose deletion is overdue, Node conditions bad for
        long enough."""
        after = self.config.terminating_after
        findings = [
            f
            for f in (terminating_stuck(p, after, now) for p in self.terminating.values())
            if f is not None
        ]
        for node in self.sick_nodes.values():
            findings += self._node_findings(node, now)
        return self._report(findings, now)

    # -- Nodes ----------------------------------------------------------------------------

    def node_changed(self, old: NodeFacts | None, new: NodeFacts, now: float) -> list[Occurrence]:
        bad = {f.uid for f in node_findings(new, self.config.node_conditions)}
        for uid in bad:
            self._bad_since.setdefault(uid, now)
        if bad:
            self.sick_nodes[new.name] = new
        else:
            self.sick_nodes.pop(new.name, None)
        if old is not None:
            for before in node_findings(old, self.config.node_conditions):
                if before.uid not in bad:  # recovered: the next time is a new finding
                    self._forget(before.uid)
                    self._bad_since.pop(before.uid, None)
        return self._report(self._node_findings(new, now), now)

    def _node_findings(self, node: NodeFacts, now: float) -> list[Finding]:
        after = self.config.node_condition_after
        return node_findings(
            node, self.config.node_conditions, after, now, self._bad_since, self.ledger
        )

    def node_deleted(self, old: NodeFacts) -> None:
        self.sick_nodes.pop(old.name, None)
        for f in node_findings(old, self.config.node_conditions):
            self._forget(f.uid)
            self._bad_since.pop(f.uid, None)

    def _forget(self, uid: str) -> None:
        if uid in self.ledger:
            self.ledger.forget(uid)
            self.changed = True

    # -- findings → occurrences -----------------------------------------------------------

    def _report(self, findings: list[Finding], now: float) -> list[Occurrence]:
        out: list[Occurrence] = []
        for f in findings:
            new = self.ledger.observe(f.uid, f.total)
            if new <= 0:
                continue
            self.changed = True
            if self.baseline:
                continue
            self.findings[f.reason] = self.findings.get(f.reason, 0) + 1
            ref = f.regarding
            since = f.since if f.since is not None else now
            out.append(
                Occurrence(
                    cluster=self.cluster,
                    uid=f.uid,
                    name=f"{ref.name}.{f.reason.lower()}",
                    namespace=ref.namespace,
                    resource_version="",
                    type="Warning",
                    reason=f.reason,
                    note=f.note,
                    action="Detected",
                    regarding=ref,
                    reporting_controller=REPORTING_CONTROLLER,
                    reporting_instance="",
                    count=new if f.count is None else min(new, f.count),
                    total=f.total,
                    first_seen=min(since, now),
                    last_seen=now,
                )
            )
        return out
