"""The `enrichment:` section: which lookups run, how long their answers are kept, and the
API budget they spend. Also says which RBAC rules the enabled lookups need."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from kube_event_watcher.config.durations import Duration, format_duration
from kube_event_watcher.config.model import StrictModel

# An API group: a lower-case DNS subdomain (RFC 1123), as CRDs' spec.group must be.
_API_GROUP = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _api_group(group: str) -> str:
    if not _API_GROUP.fullmatch(group):
        raise ValueError(
            f"{group!r} is not an API group: expected a DNS name such as argoproj.io "
            "(the part of apiVersion before the slash; the core group has no owners)"
        )
    return group


ApiGroup = Annotated[str, AfterValidator(_api_group)]


class CacheKindConfig(StrictModel):
    """How long one kind's answers are reused, and how many are kept (least recently used go)."""

    ttl: Duration = Field(default=60.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1, le=1_000_000)


def _pods() -> CacheKindConfig:
    return CacheKindConfig(ttl=60.0, max_entries=10_000)


def _owners() -> CacheKindConfig:
    # Ownership of a ReplicaSet or Job changes rarely; a longer TTL saves most owner GETs.
    return CacheKindConfig(ttl=300.0, max_entries=5_000)


def _nodes() -> CacheKindConfig:
    return CacheKindConfig(ttl=120.0, max_entries=5_000)


def _namespaces() -> CacheKindConfig:
    # Labels of a Namespace change on a team's re-org, not per incident.
    return CacheKindConfig(ttl=300.0, max_entries=5_000)


class LogTailConfig(StrictModel):
    """The previous container's last log lines on crash alerts (needs `pods/log` get)."""

    enabled: bool = False
    lines: int = Field(default=20, ge=1, le=1_000)
    max_bytes: int = Field(default=4096, ge=256, le=65_536)


class ApiBudgetConfig(StrictModel):
    """What enrichment may spend on the API server.

    qps/burst: a client-side token bucket shared by all lookups of one cluster. 20 QPS is
    what kube-controller-manager and controller-runtime allow a busy controller
    (client-go's bare default is 5/10, too tight for a cold cache during a storm); a burst
    of 50 covers a cold group flush of about a dozen Pods (Pod, ReplicaSet, Deployment, Node).
    deadline: per alert; past it the alert goes out with what is known.
    lookup_timeout: per API request.
    concurrency: alerts enriched at the same time.
    """

    qps: float = Field(default=20.0, gt=0, le=1_000)
    burst: int = Field(default=50, ge=1, le=10_000)
    deadline: Duration = Field(default=2.0, gt=0, le=60)
    lookup_timeout: Duration = Field(default=1.0, gt=0, le=60)
    concurrency: int = Field(default=32, ge=1, le=1_000)


@dataclass(frozen=True, slots=True)
class RbacRule:
    """One rule a ClusterRole needs: `verbs` on `resources` in `api_group` ("" = core)."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...] = ("get",)
    purpose: str = ""

    def inline(self) -> str:
        return (
            f'{{apiGroups: ["{self.api_group}"], resources: [{", ".join(self.resources)}], '
            f"verbs: [{', '.join(self.verbs)}]}}"
        )

    def yaml(self) -> str:
        group = f'"{self.api_group}"'
        return (
            f"- apiGroups: [{group}]\n"
            f"  resources: [{', '.join(self.resources)}]\n"
            f"  verbs: [{', '.join(self.verbs)}]"
        )


class EnrichmentConfig(StrictModel):
    """watch_objects: read Pods and Nodes from a watch-backed cache instead of GETs (a
    list+watch of every Pod and Node; a GET still when the cache lacks one). The detectors
    turn the same cache on."""

    enabled: bool = True
    watch_objects: bool = False
    pods: CacheKindConfig = Field(default_factory=_pods)
    owners: CacheKindConfig = Field(default_factory=_owners)
    nodes: CacheKindConfig = Field(default_factory=_nodes)
    namespace_labels: bool = False
    """Add the alert's Namespace labels as `facts.namespace_labels`, for routes on them
    (`facts.namespace_labels.team="payments"`): teams that own namespaces by label."""
    namespaces: CacheKindConfig = Field(default_factory=_namespaces)
    owner_groups: list[ApiGroup] = Field(default_factory=list)
    """API groups of custom resources the owner chain fetches to follow their own
    controller (`argoproj.io` for Argo Rollouts, `serving.knative.dev`): the kind's resource
    is found by discovery. Without it a custom owner is named from the ownerReference and
    ends the chain. Each group needs `get` on its resources (`rbac_rules`)."""
    negative_ttl: Duration = Field(default=10.0, ge=0)
    log_tail: LogTailConfig = Field(default_factory=LogTailConfig)
    api_budget: ApiBudgetConfig = Field(default_factory=ApiBudgetConfig)

    @field_validator("owner_groups")
    @classmethod
    def _once_each(cls, groups: list[str]) -> list[str]:
        return list(dict.fromkeys(groups))

    @model_validator(mode="after")
    def _timeouts(self) -> EnrichmentConfig:
        budget = self.api_budget
        if budget.lookup_timeout > budget.deadline:
            lookup, deadline = (
                format_duration(budget.lookup_timeout),
                format_duration(budget.deadline),
            )
            raise ValueError(
                f"api_budget.lookup_timeout ({lookup}) is longer than "
                f"api_budget.deadline ({deadline}): a lookup could never finish in time; "
                "lower lookup_timeout or raise deadline"
            )
        return self

    def rbac_rules(self) -> list[RbacRule]:
        """Exactly the rules the enabled lookups need (none when enrichment is off)."""
        if not self.enabled:
            return []
        # Only ReplicaSets and Jobs are fetched (to find their Deployment or CronJob);
        # Deployments, StatefulSets, DaemonSets and CronJobs are named from ownerReferences.
        rules = [
            RbacRule("", ("pods",), purpose="enrichment: pod status"),
            RbacRule("apps", ("replicasets",), purpose="enrichment: owner chain"),
            RbacRule("batch", ("jobs",), purpose="enrichment: owner chain"),
            RbacRule("", ("nodes",), purpose="enrichment: node conditions"),
        ]
        if self.log_tail.enabled:
            rules.append(RbacRule("", ("pods/log",), purpose="enrichment: log tail"))
        if self.namespace_labels:
            rules.append(RbacRule("", ("namespaces",), purpose="enrichment: namespace labels"))
        # The resources of a custom group are known only by discovery at run time, so the
        # rule names all of them; a narrower rule (`resources: [rollouts]`) works as well.
        rules += [
            RbacRule(group, ("*",), purpose="enrichment: custom owner chain")
            for group in self.owner_groups
        ]
        return rules
