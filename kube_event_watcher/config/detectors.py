"""The `detectors:` section: Pod and Node state detectors over a watch-backed object cache.

With `enabled: true` the daemon lists and watches the Pods (in the namespaces the sources
watch) and the Nodes of each cluster, keeps only the fields it reads, and reports what their
status shows even when no Event says so (docs/detectors.md). Off by default: it costs a
list+watch of every Pod and Node, and the RBAC to allow it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.enrichment import RbacRule
from kube_event_watcher.config.model import StrictModel

NodeCondition = Literal["NotReady", "MemoryPressure", "DiskPressure", "PIDPressure"]


def _node_conditions() -> list[NodeCondition]:
    return ["NotReady", "MemoryPressure", "DiskPressure", "PIDPressure"]


class DetectorsConfig(StrictModel):
    """enabled: watch Pods and Nodes and detect CrashLoopBackOff, OOMKilled,
    ImagePullBackOff/ErrImagePull, Pods stuck Terminating and Node conditions.
    terminating_after: a Pod still there this long after its deletionTimestamp (which is
    already the end of its grace period) is reported as stuck Terminating.
    node_conditions: which Node conditions are reported when they turn bad.
    node_condition_after: ... once bad for this long (since the condition's
    lastTransitionTime): a joining Node is NotReady until its network is up.
    check_interval: how often the time-based detector (stuck Terminating) looks.
    report_existing: on a first start (no checkpoint), also report problems already present;
    by default they are recorded and only what goes wrong from then on is reported.
    """

    enabled: bool = False
    terminating_after: Duration = Field(default=300.0, ge=0)
    node_conditions: list[NodeCondition] = Field(default_factory=_node_conditions)
    node_condition_after: Duration = Field(default=60.0, ge=0)
    check_interval: Duration = Field(default=10.0, gt=0, le=3600)
    report_existing: bool = False


def object_watch_rules() -> list[RbacRule]:
    """What the object watches need (detectors, or enrichment.watch_objects)."""
    return [
        RbacRule("", ("pods",), verbs=("list", "watch"), purpose="object cache: pods"),
        RbacRule("", ("nodes",), verbs=("list", "watch"), purpose="object cache: nodes"),
    ]
