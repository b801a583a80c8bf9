"""The `otlp` receiver against a real OpenTelemetry Collector (tests/e2e/engines/otelcol):
the daemon runs as a user runs it (a subprocess with a config file) on the API double, the
collector's file exporter shows what it accepted."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from kube_event_watcher.notifiers.otlp import ATTR_NOTIFICATION_ID, ATTR_RECORD
from kube_event_watcher.notifiers.stream import ALERT_SCHEMA
from tests.conftest import RunningDouble
from tests.e2e.conftest import _unavailable
from tests.e2e.engines.otelcol.collector import Collector, CollectorError, LogLine, find_collector
from tests.support.process import eventually, start_daemon, stop_daemon

TOKEN = "otlp-bearer-7f3c9a1e5d2b4c6a"
API_KEY = "x-api-key-0b8d6e4f2a9c1357"


@pytest.fixture(scope="session")
def otelcol_binary() -> Path:
    try:
        return find_collector()
    except CollectorError as exc:
        _unavailable(f"cannot build the OpenTelemetry Collector for the otlp tests: {exc}")


@pytest.fixture
def collector(otelcol_binary: Path, tmp_path: Path) -> Iterator[Collector]:
    workdir = tmp_path / "otelcol"
    workdir.mkdir()
    running = Collector(otelcol_binary, workdir)
    running.start()
    yield running
    running.stop()


def write_config(tmp_path: Path, endpoint: str) -> Path:
    config = {
        "receivers": [
            {
                "name": "otel",
                "type": "otlp",
                "endpoint": endpoint,
                "bearer_token": TOKEN,
                "headers": {"X-Api-Key": API_KEY},
                "resource_attributes": {"deployment.environment.name": "test"},
                "batch_size": 50,
                "delivery": {
                    "retry_initial": "100ms",
                    "retry_max": "300ms",
                    "breaker_cooldown": "300ms",
                },
            }
        ],
        "sources": [{"field_selector": None}],  # Normal events too (severity INFO)
        "state": {"backend": "file", "path": str(tmp_path / "state"), "commit_interval": "100ms"},
        "log": {"format": "json"},
        "ops": {"listen": ""},
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ids(lines: list[LogLine]) -> list[str]:
    return [line.attributes[ATTR_NOTIFICATION_ID] for line in lines]


async def wait_records(
    collector: Collector, count: int, tmp_path: Path, proc: asyncio.subprocess.Process
) -> list[LogLine]:
    return await eventually(
        lambda: (lines := collector.lines()) and len(lines) >= count and lines,
        f"{count} log records in the collector's output",
        tmp_path / "daemon.log",
        proc,
    )


async def test_alerts_reach_the_collector_as_log_records_with_the_k8s_conventions(
    api_double: RunningDouble, collector: Collector, tmp_path: Path
) -> None:
    api = api_double.api
    config = write_config(tmp_path, collector.endpoint)
    proc = await start_daemon(config, api_double.kubeconfig)
    try:
        await api.wait_watches(1, timeout=30)
        warning = await api.create_event("shop", "BackOff", "web-0")
        normal = await api.create_event("shop", "Scheduled", "web-1", type="Normal")
        lines = await wait_records(collector, 2, tmp_path, proc)
    finally:
        await stop_daemon(proc)
    by_reason = {line.attributes["k8s.event.reason"]: line for line in lines}
    backoff, scheduled = by_reason["BackOff"], by_reason["Scheduled"]

    assert backoff.body == warning["note"]
    assert (backoff.record["severityNumber"], backoff.record["severityText"]) == (13, "WARN")
    assert (scheduled.record["severityNumber"], scheduled.record["severityText"]) == (9, "INFO")
    assert backoff.scope == {"name": "kube-event-watcher", "version": backoff.scope["version"]}
    assert backoff.resource["service.name"] == "kube-event-watcher"
    assert backoff.resource["deployment.environment.name"] == "test"
    assert backoff.attributes["k8s.namespace.name"] == "shop"
    assert backoff.attributes["k8s.pod.name"] == "web-0"
    assert backoff.attributes["k8s.object.kind"] == "Pod"
    assert backoff.attributes["k8s.pod.uid"] == warning["regarding"]["uid"]
    assert backoff.attributes["k8s.event.uid"] == warning["metadata"]["uid"]
    assert backoff.attributes["kube_event_watcher.alert.status"] == "firing"
    # The whole alert record rides along, under the streaming receivers' schema.
    record = orjson.loads(backoff.attributes[ATTR_RECORD])
    assert record["schema"] == ALERT_SCHEMA
    assert record["id"] == backoff.attributes[ATTR_NOTIFICATION_ID]
    assert backoff.resource["k8s.cluster.name"] == record["cluster"]
    assert int(backoff.record["timeUnixNano"]) > 0
    assert int(backoff.record["observedTimeUnixNano"]) >= int(backoff.record["timeUnixNano"])
    assert scheduled.attributes["k8s.event.uid"] == normal["metadata"]["uid"]
    assert sorted(Counter(ids(lines)).values()) == [1, 1]

    # The bearer token and the header's value reach the collector, never a log or check-config.
    assert TOKEN not in (tmp_path / "daemon.log").read_text()
    assert API_KEY not in (tmp_path / "daemon.log").read_text()
    checked = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kube_event_watcher.cli",
        "check-config",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    shown = (await checked.communicate())[0].decode()
    assert checked.returncode == 0, shown
    assert "otlp" in shown
    assert TOKEN not in shown
    assert API_KEY not in shown


async def test_a_collector_that_is_down_then_up_loses_nothing(
    api_double: RunningDouble, collector: Collector, tmp_path: Path
) -> None:
    api = api_double.api
    collector.stop()
    proc = await start_daemon(write_config(tmp_path, collector.endpoint), api_double.kubeconfig)
    try:
        await api.wait_watches(1, timeout=30)
        created = [await api.create_event("shop", "BackOff", f"down-{i}") for i in range(12)]
        await eventually(
            lambda: "cannot reach" in (tmp_path / "daemon.log").read_text(),
            "a failed send while the collector is down",
            tmp_path / "daemon.log",
            proc,
        )
        collector.start()
        lines = await wait_records(collector, 12, tmp_path, proc)
    finally:
        await stop_daemon(proc)
    uids = [line.attributes["k8s.event.uid"] for line in collector.lines()]
    assert sorted(uids) == sorted(e["metadata"]["uid"] for e in created)
    assert len(set(ids(lines))) == len(lines) == 12, "each notification once"


async def test_a_kill_after_the_collector_accepted_resends_the_same_notification_id(
    api_double: RunningDouble, collector: Collector, tmp_path: Path
) -> None:
    """kill -9 between the collector's 200 and the spool's ack: the restart sends the
    notification again, with the same kube_event_watcher.notification.id (a consumer drops
    the repeat by it); nothing else repeats."""
    api = api_double.api
    victim: list[asyncio.subprocess.Process] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()  # aiohttp has un-gzipped it already
        headers = {"Content-Type": request.headers["Content-Type"]}
        async with (
            ClientSession() as session,
            session.post(collector.endpoint + request.path, data=body, headers=headers) as answer,
        ):
            text = await answer.read()
            status = answer.status
        while victim:  # the collector has it: the daemon dies before it hears so
            proc = victim.pop()
            proc.kill()
            await proc.wait()
        return web.Response(status=status, body=text, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", forward)
    proxy = TestServer(app, host="127.0.0.1", port=0)
    await proxy.start_server()
    try:
        config = write_config(tmp_path, str(proxy.make_url("/")).rstrip("/"))
        proc = await start_daemon(config, api_double.kubeconfig)
        victim.append(proc)
        await api.wait_watches(1, timeout=30)
        await api.create_event("shop", "OOMKilling", "db-0")
        first = await eventually(
            lambda: proc.returncode is not None and collector.lines(),
            "the collector's copy, then the kill",
            tmp_path / "daemon.log",
        )
        assert proc.returncode == -9
        proc = await start_daemon(config, api_double.kubeconfig)
        try:
            await wait_records(collector, 2, tmp_path, proc)
            await api.wait_watches(1, timeout=30)
            await api.create_event("shop", "BackOff", "web-9")
            lines = await wait_records(collector, 3, tmp_path, proc)
        finally:
            await stop_daemon(proc)
    finally:
        await proxy.close()
    counted = Counter(ids(collector.lines()))
    assert counted[ids(first)[0]] == 2, "re-sent after the kill, under the same id"
    assert sorted(counted.values()) == [1, 2], "nothing else repeats"
    assert len(counted) == len({line.attributes["k8s.event.uid"] for line in lines}) == 2
