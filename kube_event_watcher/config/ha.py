"""Config for high availability: several replicas, one leader chosen through a Lease."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from kube_event_watcher.config.durations import Duration, format_duration
from kube_event_watcher.config.model import StrictModel

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$")


class HaConfig(StrictModel):
    """`enabled`: only the replica holding the Lease `lease` watches and notifies.

    The timings follow client-go's leader election (lease 15 s, renew deadline 10 s, retry 2 s
    there too): a standby takes over `lease_duration` after it last saw the lease change; a
    leader that cannot renew for `renew_deadline` stops before that can happen.
    """

    enabled: bool = False
    lease: str = "kube-event-watcher"
    namespace: str | None = None
    """The Lease's namespace; default: $POD_NAMESPACE, the ServiceAccount's, else `default`."""
    lease_duration: Duration = Field(default=15.0, ge=1.0)
    renew_deadline: Duration = Field(default=10.0, gt=0)
    retry_period: Duration = Field(default=2.0, gt=0)
    shards: bool = False
    """Split the watches among the replicas instead of one leader doing all: each watch
    scope (a cluster × one namespace of a source) is a shard with its own Lease
    (`<lease>-<shard>`) and its own state ConfigMap (`<configmap>-<shard>`), so a shard that
    moves to another replica continues where it was. Replicas hold member Leases
    (`<lease>-member-<n>`) and each takes an even share; a replica that joins or dies makes
    the others hand over or take up shards."""

    @field_validator("lease")
    @classmethod
    def _lease_name(cls, value: str) -> str:
        if not _DNS_SUBDOMAIN.match(value):
            raise ValueError(f"expected a Lease name (a DNS subdomain), got {value!r}")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(f"expected a namespace name (a DNS label), got {value!r}")
        return value

    @model_validator(mode="after")
    def _timings(self) -> HaConfig:
        if self.renew_deadline >= self.lease_duration:
            raise ValueError(
                f"renew_deadline ({format_duration(self.renew_deadline)}) must be shorter than "
                f"lease_duration ({format_duration(self.lease_duration)}): a leader that cannot "
                "renew must stop before a standby may take the lease over"
            )
        if self.retry_period >= self.renew_deadline:
            raise ValueError(
                f"retry_period ({format_duration(self.retry_period)}) must be shorter than "
                f"renew_deadline ({format_duration(self.renew_deadline)}), so a leader gets "
                "more than one try to renew before it steps down"
            )
        return self


def ha_problems(ha: HaConfig, state_backend: str) -> list[str]:
    """Cross-section check: HA needs state every replica can read (the ConfigMap store)."""
    if ha.shards and not ha.enabled:
        return ["ha.shards needs ha.enabled: true (the shards are handed out by Leases)"]
    if ha.enabled and state_backend != "configmap":
        return [
            f"ha.enabled needs state.backend: configmap (it is {state_backend!r}): a new leader "
            "continues from the state the old one saved; with a per-replica "
            f"{state_backend} store every fail-over would lose or repeat the events of the "
            "gap. Set state.backend: configmap (and grant get/create/update on configmaps)"
        ]
    return []
