"""SIGHUP with sharded watches (`ha.shards`), in-process on the API double (its Leases and
ConfigMaps): a reload reaches the daemon of every shard this replica holds, a shard it takes
after the reload runs with the reloaded config too, and what needs a restart (here a new
namespace: the shard plan) is refused once, with the reason; a reload counts once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from structlog.testing import capture_logs

from kube_event_watcher.config.loading import load_config
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.ops.reload import reload_on_sighup
from kube_event_watcher.shards import ShardedDaemon
from tests.conftest import RunningDouble
from tests.notifiers_support import until

CONTROL = "kew-system"
NAMESPACES = ["shop", "payments"]


def config(tmp_path: Path, namespaces: list[str], reloaded: bool = False) -> dict[str, Any]:
    """Before the reload everything goes to `first`; after it to `second`, and payments to
    `pager`, a receiver the reload adds."""
    receivers = ["first", "second", *(["pager"] if reloaded else [])]
    routes: dict[str, Any] = {"receiver": "first"}
    if reloaded:
        routes = {
            "receiver": "second",
            "routes": [{"matchers": ["namespace=payments"], "receiver": "pager"}],
        }
    return {
        "sources": [{"namespaces": namespaces}],
        "receivers": [
            {"name": name, "type": "file", "path": str(tmp_path / f"{name}.jsonl")}
            for name in receivers
        ],
        "routes": routes,
        "ha": {
            "enabled": True,
            "shards": True,
            "lease": "kew",
            "namespace": CONTROL,
            "lease_duration": "2s",
            "renew_deadline": "1500ms",
            "retry_period": "100ms",
        },
        "state": {
            "backend": "configmap",
            "configmap": "kew-state",
            "path": str(tmp_path / "state"),
            "commit_interval": "100ms",
        },
        "ops": {"listen": ""},
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
    }


def reasons(path: Path) -> list[str]:
    """The reasons of the alerts a file receiver wrote, in order."""
    if not path.exists():
        return []
    return [orjson.loads(line)["reason"] for line in path.read_bytes().splitlines() if line]


class OtherReplica:
    """Another replica as its member Lease shows it: `join` takes slot 1 and keeps renewing
    it (this replica's share drops to one shard of the two), `die` stops renewing."""

    def __init__(self, double: RunningDouble) -> None:
        self.api = double.api
        self.gone = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _renew(self) -> None:
        while not self.gone.is_set():
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            await self.api.put_stored(
                "leases",
                {
                    "metadata": {"name": "kew-member-1", "namespace": CONTROL},
                    "spec": {
                        "holderIdentity": "replica-other",
                        "leaseDurationSeconds": 2,
                        "acquireTime": "2026-01-01T00:00:00.000000Z",
                        "renewTime": now,
                        "leaseTransitions": 0,
                    },
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), 0.2)

    def join(self) -> None:
        self.task = asyncio.create_task(self._renew())

    async def die(self) -> None:
        self.gone.set()
        if self.task is not None:
            await self.task


@pytest.fixture
async def other_replica(api_double: RunningDouble) -> AsyncIterator[OtherReplica]:
    other = OtherReplica(api_double)
    yield other
    await other.die()


async def test_a_reload_reaches_every_shard_and_the_ones_taken_later(
    api_double: RunningDouble, other_replica: OtherReplica, tmp_path: Path
) -> None:
    api = api_double.api
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, NAMESPACES)))
    sharded = ShardedDaemon(
        load_config(str(path), config_models()),
        kubeconfig=str(api_double.kubeconfig),
        env={"POD_NAME": "replica-a"},
    )
    first, second, pager = (tmp_path / f"{name}.jsonl" for name in ("first", "second", "pager"))
    goes_to = {"shop": second, "payments": pager}  # after the reload
    stop = asyncio.Event()
    with capture_logs() as logs:
        running = asyncio.create_task(sharded.run(stop))
        reloads = asyncio.create_task(
            reload_on_sighup(
                str(path),
                lambda: sharded.loaded,
                config_models,
                sharded.apply_reload,
                stop,
                results=sharded.reloads,
            )
        )
        try:
            # Alone, this replica holds both shards.
            await until(lambda: len(sharded.held()) == 2, "both shards held", timeout=20)
            await api.wait_watches(2, timeout=10)
            await api.create_event("shop", "BeforeReload", "web-0")
            await until(lambda: reasons(first) == ["BeforeReload"], "the alert in first")

            # Routes to `second` and the new `pager` now, and a third namespace (a new
            # shard: that needs a restart).
            path.write_text(
                yaml.safe_dump(config(tmp_path, [*NAMESPACES, "search"], reloaded=True))
            )
            os.kill(os.getpid(), signal.SIGHUP)
            await until(
                lambda: any(e["event"] == "sharded: reload applied to every shard" for e in logs),
                "the reload applied",
            )
            for namespace in NAMESPACES:  # both running shards route the new way
                await api.create_event(namespace, f"AfterReload-{namespace}", "web-1")
            await until(
                lambda: (
                    reasons(second) == ["AfterReload-shop"]
                    and reasons(pager) == ["AfterReload-payments"]
                ),
                "both shards' alerts in second and pager",
            )

            # A config that does not load is refused, counted once for the whole replica.
            path.write_text("routes: {receiver: nobody}\n")
            os.kill(os.getpid(), signal.SIGHUP)
            await until(lambda: sharded.reloads["rejected"] == 1, "the bad reload refused")

            # Another replica joins: this one hands its newest shard over (that shard's
            # daemon stops); when the other dies, it takes the shard again with a daemon
            # started after the reload.
            newest = sharded.held()[-1]
            handed = sharded.daemons[newest]
            other_replica.join()
            await until(
                lambda: (
                    newest not in sharded.held()
                    and sharded.daemons.get(newest) not in (None, handed)
                ),
                "the newest shard handed over",
                timeout=20,
            )
            await other_replica.die()
            await until(lambda: newest in sharded.held(), "the shard taken again", timeout=20)
            await api.wait_watches(3, timeout=10)
            taken = sharded.daemons[newest]
            namespace = next(s.namespace for s in sharded.shards if s.name == newest)
            await api.create_event(namespace, "TakenLater", "api-0")
            await until(
                lambda: "TakenLater" in reasons(goes_to[namespace]), "the retaken shard's alert"
            )
            metrics = sharded.metrics.render()[0].decode()
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(running, reloads), 20)

    assert reasons(first) == ["BeforeReload"]
    assert reasons(goes_to[namespace]) == [f"AfterReload-{namespace}", "TakenLater"]
    assert "pager" in taken.delivery.lanes
    # The retaken shard's daemon kept the start-up plan: its own namespace, its own Lease.
    assert taken is not handed
    assert [s.namespaces for s in taken.loaded.config.sources] == [[namespace]]
    assert taken.loaded.config.ha.lease == f"kew-{newest}"
    assert len(sharded.shards) == 2
    refused = [e for e in logs if e["event"].startswith("sharded: not applied until")]
    assert [e["sections"] for e in refused] == ["sources"]
    assert 'kew_config_reloads_total{result="applied"} 1.0' in metrics
    assert 'kew_config_reloads_total{result="rejected"} 1.0' in metrics
