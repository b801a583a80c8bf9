"""Sharded watches (`ha.shards`): the replicas split the watch scopes among themselves.

Each scope (a cluster × one namespace of a source) is a shard: a daemon of its own with its
own Lease (`<lease>-<shard>`) and its own state ConfigMap (`<configmap>-<shard>`: checkpoint,
seen-ledger, aggregation windows), so a shard that moves to another replica continues from
where it was, as a fail-over of one leader does. Every replica runs a candidate for every
shard; how many it may hold is its even share, `ceil(shards / members)`, where the members
are the replicas holding one of the member Leases (`<lease>-member-<n>`, one slot per shard:
more replicas than shards have nothing to do). A replica above its share (another joined)
stops its newest shard gracefully (final checkpoint, lease released) and a replica below its
share takes it; a replica that dies drops out of the census when its member Lease runs out,
and the others take up its shards when their Leases run out.

The process serves one ops endpoint: its watches are those of the shards it holds, and its
metrics the sum of theirs (`kew_leader` is the number of shards it leads).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from kube_event_watcher import __version__
from kube_event_watcher.clock import Clock, SystemClock
from kube_event_watcher.config.loading import LoadedConfig
from kube_event_watcher.config.schema import ClusterConfig, Config, SourceConfig
from kube_event_watcher.daemon import IMPLICIT_CLUSTER, Daemon, watch_scopes
from kube_event_watcher.kube.client import own_namespace, resolve_endpoint
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.lease import (
    LeaderElector,
    LeadershipLost,
    LeaseCensus,
    LeaseTimings,
    default_identity,
)
from kube_event_watcher.ops.health import WatchStatus
from kube_event_watcher.ops.logging import configure_logging
from kube_event_watcher.ops.metrics import Metrics, SharedMetrics, build_labels, hot_path_compiled
from kube_event_watcher.ops.reload import ReloadOutcome, diff_configs, with_live_sections
from kube_event_watcher.ops.server import OpsServer

log = structlog.get_logger(__name__)

# Kubernetes object names: the shard's part of a Lease or ConfigMap name stays short.
_UNSAFE = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class Shard:
    """One watch scope as a unit that moves between replicas."""

    name: str  # the suffix of its Lease and ConfigMap: readable, unique, DNS-safe
    cluster: ClusterConfig | None  # None: the implicit cluster (the kubeconfig's context)
    source: SourceConfig
    namespace: str | None
    scope_id: str


def shard_name(scope_id: str, namespace: str | None) -> str:
    """`<namespace>-<hash>`: the namespace for people, the hash of the whole scope (cluster,
    namespace, field selector) so two scopes never share a Lease."""
    digest = hashlib.blake2b(scope_id.encode(), digest_size=4).hexdigest()
    where = _UNSAFE.sub("-", (namespace or "all").lower()).strip("-")[:40] or "ns"
    return f"{where}-{digest}"


def plan_shards(config: Config) -> list[Shard]:
    """Every watch scope of the config, as shards, in config order."""
    clusters: list[ClusterConfig | None] = list(config.clusters) or [None]
    shards = []
    for cluster in clusters:
        name = cluster.name if cluster is not None else IMPLICIT_CLUSTER
        for scope, source in watch_scopes(name, config.sources):
            shards.append(
                Shard(
                    shard_name(scope.id, scope.namespace),
                    cluster,
                    source,
                    scope.namespace,
                    scope.id,
                )
            )
    return shards


def fair_share(shards: int, members: int) -> int:
    """How many shards one replica may hold: an even split, rounded up (none while it is
    not a member)."""
    return math.ceil(shards / members) if members > 0 else 0


def shard_config(loaded: LoadedConfig, shard: Shard) -> LoadedConfig:
    """The config of one shard's daemon: its one cluster and scope, its own Lease and
    ConfigMap, no ops endpoint of its own (the process serves one)."""
    config = loaded.config
    source = shard.source.model_copy(
        update={"namespaces": [shard.namespace] if shard.namespace else []}
    )
    sliced = config.model_copy(
        update={
            "clusters": [shard.cluster] if shard.cluster is not None else [],
            "sources": [source],
            "ha": config.ha.model_copy(
                update={"lease": f"{config.ha.lease}-{shard.name}", "shards": False}
            ),
            "state": config.state.model_copy(
                update={"configmap": f"{config.state.configmap}-{shard.name}"}
            ),
            "ops": config.ops.model_copy(update={"listen": ""}),
        }
    )
    return dataclasses.replace(loaded, config=sliced)


def member_slots(lease: str, shards: int) -> list[str]:
    return [f"{lease}-member-{n}" for n in range(shards)]


class ShardedDaemon:
    """Runs a candidate daemon per shard and keeps this replica at its share of them."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        clock: Clock | None = None,
        env: Mapping[str, str] | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        # `loaded` is the config as last read (what the next reload compares with);
        # `started` the one the replica started with, whose watch scopes, Leases, state and
        # ops stay until it restarts (the shard plan is made of them). A shard's daemon runs
        # `current()`: start-up's sections with the live ones of the last reload.
        self.loaded = loaded
        self.started = loaded
        self._not_applied: tuple[str, ...] = ()
        config = loaded.config
        self.kubeconfig = kubeconfig
        self.context = context
        self.clock = clock or SystemClock()
        self.env = env if env is not None else os.environ
        self.spool_dir = spool_dir or Path(config.state.path).expanduser() / "spool"
        self.shards = plan_shards(config)
        self.identity = default_identity(self.env)
        self.timings = LeaseTimings(
            config.ha.lease_duration, config.ha.renew_deadline, config.ha.retry_period
        )
        self.metrics = Metrics()
        self.metrics.bind(
            "build_info", self, lambda: 1.0, **build_labels(__version__, hot_path_compiled())
        )
        self.reloads: dict[str, int] = {"applied": 0, "rejected": 0}
        self.metrics.bind("config_reloads", self, "reloads", key_label="result")
        self.ops = OpsServer(
            config.ops, self.watch_statuses, self.metrics, self.clock, standby=self.standby_status
        )
        self.daemons: dict[str, Daemon] = {}
        self.members = 0  # live member Leases, us included, at the last census
        self.share = 0
        self.member_slot: str | None = None
        self.moves = {"taken": 0, "handed_over": 0}
        self._held_since: dict[str, float] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._attempt: tuple[str, float] | None = None
        # cli's systemd notifier reads these, as on a Daemon.
        self.ready = asyncio.Event()
        self.standing_by = asyncio.Event()
        self.runners: list[Any] = []
        self.watches: list[Any] = []

    # -- what this replica holds ------------------------------------------------------

    def held(self) -> list[str]:
        """The shards this replica leads now, oldest first."""
        leading = [
            name
            for name, daemon in self.daemons.items()
            if daemon.elector is not None
            and daemon.elector.leading()
            and not daemon.standing_by.is_set()
        ]
        return sorted(leading, key=lambda name: self._held_since.get(name, 0.0))

    def may_take(self, name: str) -> bool:
        """Whether shard `name`'s candidate may try for its lease now: only below our share,
        and one shard per retry period, so replicas starting together spread the shards
        instead of each grabbing all and handing most back."""
        if self.member_slot is None or len(self.held()) >= self.share:
            return False
        now = self.clock.monotonic()
        if self._attempt is not None and self._attempt[0] != name and now < self._attempt[1]:
            return False
        self._attempt = (name, now + self.timings.retry_period)
        return True

    def watch_statuses(self) -> list[WatchStatus]:
        return [status for name in self.held() for status in self.daemons[name].watch_statuses()]

    def standby_status(self) -> dict[str, Any] | None:
        if self.held():
            return None
        return {
            "ready": True,
            "role": "standby",
            "shards": len(self.shards),
            "members": self.members,
            "identity": self.identity,
        }

    # -- running ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        config = self.loaded.config
        first = config.clusters[0] if config.clusters else ClusterConfig(name=IMPLICIT_CLUSTER)
        endpoint = await resolve_endpoint(first, self.kubeconfig, self.context, self.env)
        http = KubeHttp(endpoint)
        namespace = config.ha.namespace or own_namespace(first, self.env)
        slots = member_slots(config.ha.lease, len(self.shards))
        census = LeaseCensus(http, namespace, slots, self.identity, self.clock)
        await self.ops.start()
        self.standing_by.set()
        self.ready.set()
        log.info(
            "sharded: candidate for every shard",
            shards=[shard.name for shard in self.shards],
            identity=self.identity,
        )
        tasks = [
            asyncio.create_task(self._membership(stop, http, namespace, slots), name="member"),
            asyncio.create_task(self._balance(stop, census), name="balance"),
            *(
                asyncio.create_task(self._run_shard(shard, stop), name=f"shard {shard.name}")
                for shard in self.shards
            ),
        ]
        try:
            await stop.wait()
        finally:
            # Shards stop on their own (each relays `stop`): final checkpoints, leases freed.
            shard_tasks = [t for t in tasks if t.get_name().startswith("shard ")]
            await asyncio.gather(*shard_tasks, return_exceptions=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.ops.stop()
            await http.close()

    async def _membership(
        self, stop: asyncio.Event, http: KubeHttp, namespace: str, slots: list[str]
    ) -> None:
        """Hold one member slot (the first free one); without one this replica is a spare."""
        electors = [
            LeaderElector(http, namespace, slot, self.identity, self.timings, self.clock)
            for slot in slots
        ]
        while not stop.is_set():
            for elector in electors:
                try:
                    if not await elector.try_acquire_or_renew():
                        continue
                except Exception as exc:
                    log.warning("sharded: cannot read a member lease", error=str(exc))
                    continue
                self.member_slot = elector.name
                log.info("sharded: member", slot=elector.name)
                try:
                    await elector.hold()
                except LeadershipLost as exc:
                    log.warning("sharded: lost the member lease", reason=str(exc))
                finally:
                    self.member_slot = None
                    if stop.is_set():
                        await elector.release()
                break
            await asyncio.sleep(self.timings.retry_period)

    async def _balance(self, stop: asyncio.Event, census: LeaseCensus) -> None:
        """Every retry period: count the members, set the share, hand over the newest shard
        when above it."""
        while not stop.is_set():
            members = await census.count()
            self.members = members
            self.share = fair_share(len(self.shards), members) if self.member_slot else 0
            held = self.held()
            for name in held:
                self._held_since.setdefault(name, self.clock.monotonic())
            if len(held) > self.share and not self._stops[held[-1]].is_set():
                newest = held[-1]
                log.info(
                    "sharded: above my share; handing a shard over",
                    shard=newest,
                    held=len(held),
                    share=self.share,
                    members=members,
                )
                self.moves["handed_over"] += 1
                self._stops[newest].set()
            if held:
                self.standing_by.clear()
            else:
                self.standing_by.set()
            await asyncio.sleep(self.timings.retry_period)

    def current(self) -> LoadedConfig:
        """What a shard's daemon runs with now: the routes, receivers, filters (every section
        a reload changes live) of the last reload; everything else as at start-up."""
        return with_live_sections(self.started, self.loaded)

    async def _run_shard(self, shard: Shard, stop: asyncio.Event) -> None:
        """The shard's candidate, again after each term (handed over, or its lease lost),
        each time with the config as it is then (a reload since start-up included)."""
        while not stop.is_set():
            own_stop = asyncio.Event()
            self._stops[shard.name] = own_stop
            metrics = SharedMetrics(self.metrics)
            # No await between reading the config and registering the daemon: a reload
            # either went into current() already or reaches this daemon in self.daemons.
            daemon = Daemon(
                shard_config(self.current(), shard),
                kubeconfig=self.kubeconfig,
                context=self.context,
                clock=self.clock,
                env=self.env,
                spool_dir=self.spool_dir / shard.name,
                metrics=metrics,
                serve_ops=False,
                may_lead=lambda name=shard.name: self.may_take(name),  # type: ignore[misc]
            )
            self.daemons[shard.name] = daemon
            relay = asyncio.create_task(_relay(stop, own_stop))
            try:
                await daemon.run(own_stop)
                if not stop.is_set() and own_stop.is_set():
                    log.info("sharded: shard handed over", shard=shard.name)
            except LeadershipLost as exc:
                log.warning("sharded: lost a shard's lease", shard=shard.name, reason=str(exc))
            except Exception as exc:
                log.error(
                    "sharded: a shard's daemon failed; starting it again",
                    shard=shard.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(self.timings.retry_period)
            finally:
                relay.cancel()
                metrics.release()
                self._held_since.pop(shard.name, None)
                if self.daemons.get(shard.name) is daemon:
                    del self.daemons[shard.name]

    async def apply_reload(self, outcome: ReloadOutcome) -> None:
        """SIGHUP: every shard's daemon swaps what can change live, as a single daemon does
        (those running now; a shard taken later starts with it). What needs a restart (the
        watch scopes, which make the shard plan, and state, ha, ops) keeps its start-up value
        on every shard: said once, when a reload first differs from start-up there."""
        if not outcome.accepted:
            return
        self.loaded = outcome.loaded
        not_applied = diff_configs(self.started, outcome.loaded).restart
        if not_applied and not_applied != self._not_applied:
            log.warning(
                "sharded: not applied until the replicas restart; restart them one at a time "
                "(each hands its shards over before it stops)",
                sections=", ".join(not_applied),
            )
        self._not_applied = not_applied
        current = self.current()
        # Logging is the process's: configured once here, not once per shard; and a
        # receiver's changed settings are said once here too.
        changes = dataclasses.replace(
            outcome.changes,
            live=tuple(s for s in outcome.changes.live if s != "log"),
            receivers_changed=(),
        )
        if outcome.changes.receivers_changed:
            log.warning(
                "sharded: receiver settings changed; the running shards keep theirs, a shard "
                "started from now on has the new ones",
                receivers=", ".join(outcome.changes.receivers_changed),
            )
        by_name = {shard.name: shard for shard in self.shards}
        for name, daemon in list(self.daemons.items()):
            await daemon.apply_reload(
                ReloadOutcome(shard_config(current, by_name[name]), True, (), changes)
            )
        if "log" in outcome.changes.live:
            configure_logging(current.config.log.level, current.config.log.format)
        log.info(
            "sharded: reload applied to every shard",
            running=len(self.daemons),
            changes=outcome.changes.summary(),
        )


async def _relay(stop: asyncio.Event, own: asyncio.Event) -> None:
    await stop.wait()
    own.set()
