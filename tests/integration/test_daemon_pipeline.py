"""The whole pipeline as a user runs it: aggregation, routing, two receivers, the ops
endpoint, SIGHUP reload and systemd readiness, against the API double."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from pathlib import Path

import aiohttp
import yaml

from tests.conftest import RunningDouble
from tests.support.process import eventually, records, start_daemon, stop_daemon


def pipeline_config(tmp_path: Path) -> dict[str, object]:
    return {
        "receivers": [
            {"name": "payments", "type": "file", "path": str(tmp_path / "payments.jsonl")},
            {"name": "everyone", "type": "file", "path": str(tmp_path / "everyone.jsonl")},
        ],
        "routes": {
            "receiver": "everyone",
            "routes": [{"match": {"namespace": "payments-.*"}, "receiver": "payments"}],
        },
        "aggregation": {
            "group": {"wait": "1s", "interval": "5s", "resolve_after": "3s"},
            "dedup": {"window": "2s"},
        },
        "enrichment": {"enabled": False},
        "state": {"backend": "file", "path": str(tmp_path / "state"), "commit_interval": "200ms"},
        "ops": {"listen": "127.0.0.1:0"},
        "log": {"format": "json"},
    }


def write(tmp_path: Path, config: dict[str, object]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ops_port(tmp_path: Path) -> int | None:
    log = (tmp_path / "daemon.log").read_text() if (tmp_path / "daemon.log").exists() else ""
    found = re.search(
        r'"ops endpoint listening", "address": "127\.0\.0\.1:(\d+)"', log
    ) or re.search(r'"address": "127\.0\.0\.1:(\d+)", "event": "ops endpoint listening"', log)
    return int(found.group(1)) if found else None


async def test_a_crash_loop_is_one_alert_routed_by_namespace_then_resolved(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    api = api_double.api
    proc = await start_daemon(write(tmp_path, pipeline_config(tmp_path)), api_double.kubeconfig)
    try:
        await api.wait_watches(1, timeout=30)
        events = []
        for i in range(5):
            pod = f"checkout-7d4b9c-{i:05d}"
            events.append(await api.create_event("payments-prod", "BackOff", pod))
            events.append(await api.create_event("payments-prod", "Unhealthy", pod))
        for event in events[::2]:
            await api.repeat_event(event, count=3)
        other = await api.create_event("shop", "FailedMount", "web-0")
        payments = tmp_path / "payments.jsonl"
        firing = await eventually(
            lambda: [r for r in records(payments) if r["status"] == "firing"],
            "the firing group alert",
            tmp_path / "daemon.log",
        )
        resolved = await eventually(
            lambda: [r for r in records(payments) if r["status"] == "resolved"],
            "the resolved group alert",
            tmp_path / "daemon.log",
        )
        everyone = await eventually(
            lambda: (
                [r for r in records(tmp_path / "everyone.jsonl") if r["status"] == "resolved"]
                and records(tmp_path / "everyone.jsonl")
            ),
            "the shop alert, firing and resolved",
            tmp_path / "daemon.log",
        )
    finally:
        await stop_daemon(proc)
    assert len(firing) == 1 and len(resolved) == 1
    group = firing[0]["group"]
    assert group["objects"] == {"Pod": 5}  # type: ignore[index]
    assert set(group["reasons"]) == {"BackOff", "Unhealthy"}  # type: ignore[index]
    assert firing[0]["count"] == 5 * 3 + 5  # series increments, not watch lines
    assert resolved[0]["key"] == firing[0]["key"]
    assert [(r["namespace"], r["status"]) for r in everyone] == [
        ("shop", "firing"),
        ("shop", "resolved"),
    ]
    assert everyone[0]["reason"] == other["reason"]


async def test_ops_endpoint_reload_and_systemd_readiness(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    config = pipeline_config(tmp_path)
    proc = await start_daemon(
        write(tmp_path, config), api_double.kubeconfig, NOTIFY_SOCKET=str(notify)
    )
    loop = asyncio.get_running_loop()
    try:
        ready = await asyncio.wait_for(loop.sock_recv(sock, 4096), 30)
        assert b"READY=1" in ready
        port = await eventually(
            lambda: ops_port(tmp_path), "the ops endpoint", tmp_path / "daemon.log"
        )
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200
            await api_double.api.create_event("shop", "BackOff", "web-0")
            metrics = ""
            for _ in range(200):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                    metrics = await response.text()
                if 'kew_occurrences_total{cluster="default"} 1.0' in metrics:
                    break
                await asyncio.sleep(0.02)
            assert 'kew_occurrences_total{cluster="default"} 1.0' in metrics
            assert "kew_watch_up" in metrics
            assert "kew_leader 1.0" in metrics
            # A bad config on SIGHUP is refused; the daemon keeps running on the old one.
            (tmp_path / "config.yaml").write_text("sources: {oops: 1}\n")
            proc.send_signal(signal.SIGHUP)
            await eventually(
                lambda: "config reload rejected" in (tmp_path / "daemon.log").read_text(),
                "the reload rejection",
                tmp_path / "daemon.log",
            )
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
    finally:
        await stop_daemon(proc)
        sock.close()
    assert proc.returncode == 0
