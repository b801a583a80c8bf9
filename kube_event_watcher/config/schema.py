"""The config file's shape. Each section is a frozen model; defaults give a working daemon."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from kube_event_watcher.config.aggregation import AggregationConfig
from kube_event_watcher.config.detectors import DetectorsConfig
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.config.fleet import FleetConfig, fleet_problems
from kube_event_watcher.config.ha import HaConfig, ha_problems
from kube_event_watcher.config.match import MatchRule as MatchRule  # re-exported for filters/routes
from kube_event_watcher.config.model import StrictModel
from kube_event_watcher.config.ops import OpsConfig, ops_problems
from kube_event_watcher.config.routing import (
    InhibitRuleConfig,
    RouteConfig,
    SilenceConfig,
    receiver_reference_problems,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DEFAULT_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _namespace_name(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(f"expected a namespace name (a DNS label), got {value!r}")
    return value


NamespaceName = Annotated[str, AfterValidator(_namespace_name)]


def default_state_dir() -> str:
    """The systemd unit's StateDirectory when set, else the XDG state dir."""
    systemd_state = os.environ.get("STATE_DIRECTORY")
    if systemd_state:
        return systemd_state.split(":")[0]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(base, "kube-event-watcher")


class ClusterConfig(StrictModel):
    """How to reach one cluster: a kubeconfig (kubectl's order) or the in-cluster account."""

    name: str = Field(min_length=1)
    kubeconfig: str | list[str] | None = None
    context: str | None = None
    in_cluster: bool = False
    service_account_dir: str = _DEFAULT_SA_DIR
    insecure_skip_tls_verify: bool = False
    connect_timeout: Duration = 10.0
    request_timeout: Duration = 30.0

    @model_validator(mode="after")
    def _one_way(self) -> ClusterConfig:
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("give either in_cluster: true or kubeconfig/context, not both")
        return self


class SourceConfig(StrictModel):
    """One event watch scope; with namespaces, one watch per namespace."""

    cluster: str | None = None
    namespaces: list[NamespaceName] = Field(default_factory=list)
    field_selector: str | None = "type=Warning"
    startup_max_age: Duration = 0.0
    page_size: int = Field(default=500, ge=1, le=10_000)
    watch_timeout: Duration = Field(default=290.0, ge=10.0)
    stall_timeout: Duration = Field(default=330.0, ge=10.0)
    max_line_bytes: int = Field(default=2 * 1024 * 1024, ge=64 * 1024)

    @field_validator("namespaces", mode="before")
    @classmethod
    def _list_of_names(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"expected a list of names, got {value!r}")
        return value

    @field_validator("field_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for term in filter(None, (t.strip() for t in value.split(","))):
            if "=" not in term:
                raise ValueError(
                    f"expected terms like 'type=Warning' or 'reason!=Pulled', got {term!r}"
                )
        return value or None


class FiltersConfig(StrictModel):
    """`drop` removes what matches any rule; a non-empty `keep` passes only what matches one."""

    drop: list[MatchRule] = Field(default_factory=list)
    keep: list[MatchRule] = Field(default_factory=list)


class StateConfig(StrictModel):
    backend: Literal["memory", "file", "configmap"] = "file"
    path: str = Field(default_factory=default_state_dir)
    configmap: str = "kube-event-watcher-state"
    """ConfigMap backend: its name; the namespace is `namespace` or the pod's own."""
    namespace: NamespaceName | None = None
    commit_interval: Duration = 1.0
    fsync: bool = True
    """Fsync the spools (every backend) and the journal (file backend) before an alert goes
    out (a power loss or kernel crash then loses nothing either). False keeps the writes in
    the page cache: the daemon's own crashes (kill -9, OOM kill, a container restart) still
    lose and repeat nothing, a machine's crash may; less CPU and a shorter latency tail
    (docs/delivery.md)."""


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ReceiverEntry(StrictModel):
    """A receiver as written; the notifier's own model validates the rest of its keys."""

    model_config = StrictModel.model_config | {"extra": "allow"}
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)

    @property
    def takes_occurrences(self) -> bool:
        """`records: occurrences` (a streaming receiver feeding a fleet's central instance):
        it gets every occurrence, never a routed alert."""
        return (self.model_extra or {}).get("records") == "occurrences"


def default_receivers() -> list[ReceiverEntry]:
    return [ReceiverEntry(name="stdout", type="stdout")]


def default_sources() -> list[SourceConfig]:
    return [SourceConfig()]


class Config(StrictModel):
    """The whole config. `{}` is a valid config: Warning events of the current context to stdout."""

    clusters: list[ClusterConfig] = Field(default_factory=list)
    sources: list[SourceConfig] = Field(default_factory=default_sources)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    enrichment: EnrichmentConfig = Field(default_factory=EnrichmentConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    receivers: list[ReceiverEntry] = Field(default_factory=default_receivers)
    state: StateConfig = Field(default_factory=StateConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    routes: RouteConfig | None = None
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    silences: list[SilenceConfig] = Field(default_factory=list)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    ha: HaConfig = Field(default_factory=HaConfig)
    fleet: FleetConfig | None = None

    @model_validator(mode="after")
    def _references(self) -> Config:
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"clusters: names must be unique, got {names}")
        for i, source in enumerate(self.sources):
            if source.cluster is not None and source.cluster not in names:
                known = ", ".join(names) or "none configured"
                raise ValueError(
                    f"sources[{i}].cluster: no cluster named {source.cluster!r} (known: {known})"
                )
        receivers = [r.name for r in self.receivers]
        if len(set(receivers)) != len(receivers):
            raise ValueError(f"receivers: names must be unique, got {receivers}")
        publishers = [r.name for r in self.receivers if r.takes_occurrences]
        problems = receiver_reference_problems(self.routes, receivers, publishers)
        if self.ops.self_alert_receiver in publishers:
            problems.append(
                f"ops.self_alert_receiver: {self.ops.self_alert_receiver!r} publishes "
                "occurrences (records: occurrences); name a receiver of alerts"
            )
        problems += ops_problems(self.ops, receivers, [s.watch_timeout for s in self.sources])
        problems += ha_problems(self.ha, self.state.backend)
        problems += fleet_problems(
            self.fleet, names, self.state.backend, self.ha.enabled, self.ha.shards
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def alert_receivers(self) -> list[str]:
        """The receivers routes and defaults send alerts to (not the occurrence publishers)."""
        return [r.name for r in self.receivers if not r.takes_occurrences]

    @property
    def watches_objects(self) -> bool:
        """Whether the Pod and Node watches run (detectors, or cache-backed enrichment)."""
        return self.detectors.enabled or (self.enrichment.enabled and self.enrichment.watch_objects)
