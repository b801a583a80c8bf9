"""Config for a fleet's central instance: occurrences read from a stream that the clusters'
edge instances publish to (receivers with `records: occurrences`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.model import StrictModel


class FleetStreamEntry(StrictModel):
    """The stream to read, with the keys of the edge's receiver of that type (`kafka`:
    bootstrap_servers, topic, security, ...; `nats`: servers, stream, subject, auth, tls);
    the receiver's own model validates them (config/loading.py)."""

    model_config = StrictModel.model_config | {"extra": "allow"}
    type: Literal["kafka", "nats"]


class FleetConfig(StrictModel):
    """`consume`: this instance aggregates, routes and delivers the occurrences of every
    cluster that publishes to the stream, besides its own `clusters:` watches (none when
    `clusters:` is not given: a central instance needs no Kubernetes API)."""

    consume: FleetStreamEntry
    startup_max_age: Duration = Field(
        default=0.0,
        ge=0,
        description="on a first start, read what was published this long before (0: from "
        "now on); later starts continue exactly where the last checkpoint was",
    )


def fleet_problems(
    fleet: FleetConfig | None,
    clusters: list[str],
    state_backend: str,
    ha_enabled: bool,
    ha_shards: bool,
) -> list[str]:
    """What a central instance cannot do (without clusters: anything needing the API)."""
    if fleet is None:
        return []
    problems = []
    if ha_shards:
        problems.append(
            "ha.shards: a central instance reads its stream as one consumer; every shard "
            "would read it again. Use ha.enabled without shards for a standby"
        )
    if clusters:
        return problems
    if state_backend == "configmap":
        problems.append(
            "state.backend: configmap needs a cluster; a central instance without clusters: "
            "keeps its state in a file (backend: file)"
        )
    if ha_enabled:
        problems.append(
            "ha.enabled: leader election needs a cluster for its Lease; list the cluster "
            "under clusters: (its sources can be empty)"
        )
    return problems
