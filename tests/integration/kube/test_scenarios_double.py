"""The shared scenarios against the API double (tests/e2e runs them on the real server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningDouble
from tests.support import scenarios


class DoubleCluster:
    def __init__(self, double: RunningDouble) -> None:
        self.double = double
        self.kubeconfig = double.kubeconfig

    async def new_namespace(self) -> str:
        return scenarios.unique_namespace()

    async def create_event(self, namespace: str, reason: str, regarding: str) -> dict[str, Any]:
        return await self.double.api.create_event(namespace, reason, regarding)

    async def repeat_event(self, event: dict[str, Any], count: int) -> None:
        await self.double.api.repeat_event(event, count)

    async def delete_event(self, event: dict[str, Any]) -> None:
        await self.double.api.delete_event(event)

    async def compact(self) -> None:
        self.double.api.compact()

    async def interrupt_watches(self) -> None:
        self.double.api.cut_watches()


@pytest.fixture
def cluster(api_double: RunningDouble) -> DoubleCluster:
    return DoubleCluster(api_double)


async def test_in_order_once(cluster: DoubleCluster, tmp_path: Path) -> None:
    await scenarios.in_order_once(cluster, tmp_path)


async def test_series_growth(cluster: DoubleCluster, tmp_path: Path) -> None:
    await scenarios.series_growth(cluster, tmp_path)


async def test_watch_interrupted(cluster: DoubleCluster, tmp_path: Path) -> None:
    await scenarios.watch_interrupted(cluster, tmp_path)


@pytest.mark.parametrize("compact", [False, True], ids=["resume", "after-410"])
async def test_restart_catch_up(cluster: DoubleCluster, tmp_path: Path, compact: bool) -> None:
    await scenarios.restart_catch_up(cluster, tmp_path, compact=compact)
