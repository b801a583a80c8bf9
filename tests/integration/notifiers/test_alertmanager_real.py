"""Alerts pushed into a real Alertmanager (Debian package `prometheus-alertmanager`) on
loopback: they appear in GET /api/v2/alerts with our labels, and resolving them works."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from kube_event_watcher.notifiers.base import Delivered
from kube_event_watcher.pipeline.model import Alert
from tests.factories import numbered_alert

BINARIES = ("prometheus-alertmanager", "alertmanager")
CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    message = "Alertmanager is not installed (apt-get install -y prometheus-alertmanager)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = _binary()
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG)
    port = _free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
async def ready_alertmanager(alertmanager: str, tmp_path: Path) -> str:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{alertmanager}/-/ready") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        else:
            log = (tmp_path / "alertmanager.log").read_text(errors="replace")
            pytest.fail(f"Alertmanager did not become ready:\n{log[-2000:]}")
    return alertmanager


async def active_alerts(base: str, **filters: str) -> list[dict[str, Any]]:
    params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/api/v2/alerts", params=params) as response,
    ):
        assert response.status == 200
        alerts: list[dict[str, Any]] = await response.json()
        return alerts


def resolved(alert: Alert) -> Alert:
    return replace(alert, status="resolved")


@pytest.fixture
async def live(ready_alertmanager: str) -> AsyncIterator[tuple[AlertmanagerNotifier, FakeClock]]:
    """A started notifier on a clock at real time: Alertmanager judges "active" by its own
    wall clock, so the alerts live in real time."""
    clock = FakeClock(start=time.time())
    notifier = AlertmanagerNotifier(
        AlertmanagerConfig(name="am", type="alertmanager", url=ready_alertmanager), clock=clock
    )
    await notifier.start()
    yield notifier, clock
    await notifier.close()


async def test_alerts_appear_with_labels_and_resolve(
    ready_alertmanager: str, live: tuple[AlertmanagerNotifier, FakeClock]
) -> None:
    notifier, clock = live
    alert = replace(numbered_alert(3), first_seen=clock.now(), last_seen=clock.now())
    assert await notifier.send(alert) == Delivered("HTTP 200")
    found = await active_alerts(ready_alertmanager, alert_key=alert.key)
    assert len(found) == 1
    labels = found[0]["labels"]
    assert labels["alertname"] == "BackOff"
    assert labels["cluster"] == "prod"
    assert labels["namespace"] == "payments"
    assert labels["kind"] == "Pod"
    assert labels["name"] == "api-3"
    assert labels["severity"] == "warning"
    assert found[0]["annotations"]["description"] == alert.note
    assert found[0]["status"]["state"] == "active"
    assert alert.key in notifier.firing

    # The periodic re-send keeps it firing with a later endsAt.
    first_end = found[0]["endsAt"]
    clock.advance(30)
    assert await notifier.resend_firing() == Delivered("HTTP 200")
    again = await active_alerts(ready_alertmanager, alert_key=alert.key)
    assert again[0]["endsAt"] > first_end

    # Resolve: same labels, endsAt now -> no longer active.
    clock.set_wall(time.time())
    assert await notifier.send(resolved(alert)) == Delivered("HTTP 200")
    assert await active_alerts(ready_alertmanager, alert_key=alert.key) == []
    assert alert.key not in notifier.firing
    assert await notifier.resend_firing() is None


async def test_a_batch_of_alerts_is_one_post_and_each_is_active(
    ready_alertmanager: str, live: tuple[AlertmanagerNotifier, FakeClock]
) -> None:
    notifier, clock = live
    alerts = [
        replace(numbered_alert(i), first_seen=clock.now(), last_seen=clock.now())
        for i in (20, 21, 22)
    ]
    assert await notifier.send_many(alerts) == Delivered("HTTP 200")
    for alert in alerts:
        found = await active_alerts(ready_alertmanager, alert_key=alert.key)
        assert [f["status"]["state"] for f in found] == ["active"]
    assert set(notifier.firing) >= {a.key for a in alerts}
    clock.set_wall(time.time())
    assert await notifier.send_many([resolved(a) for a in alerts]) == Delivered("HTTP 200")
    for alert in alerts:
        assert await active_alerts(ready_alertmanager, alert_key=alert.key) == []
        assert alert.key not in notifier.firing


async def test_invalid_alert_is_rejected_for_good(ready_alertmanager: str) -> None:
    notifier = AlertmanagerNotifier(
        AlertmanagerConfig(name="am", type="alertmanager", url=ready_alertmanager)
    )
    await notifier.start()
    try:
        # A label name Alertmanager's validation refuses (HTTP 400).
        bad = replace(numbered_alert(4), reason="")
        notifier.config = notifier.config.model_copy(update={"labels": {"": "x"}})
        result = await notifier.send(bad)
        assert type(result).__name__ == "PermanentFailure"
        assert notifier.explain(400, "") is not None
    finally:
        await notifier.close()
