"""Every metric the docs list has samples when a running daemon is scraped.

The daemon runs as a user runs it (its own process, `run -c`, the ops server) against the
real kube-apiserver with the features that feed the metrics on: HA (a Lease), the ConfigMap
state backend, detectors and enrichment, a file receiver. A crash-looping Pod on a NotReady
Node gives an alert and detector findings; a SIGHUP with a valid config and one with a
broken config give both reload results. Then /metrics is read and parsed as Prometheus does.
"""

from __future__ import annotations

import os
import signal
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kube_event_watcher import __version__
from kube_event_watcher.ops.metrics import METRICS
from tests.e2e.controlplane.cluster import ControlPlane, free_port
from tests.e2e.test_enrichment_e2e import crash_looping_workload, not_ready_node
from tests.support.process import eventually, records, start_daemon, stop_daemon


def config(namespace: str, directory: Path, port: int) -> dict[str, Any]:
    return {
        "sources": [{"field_selector": "type=Warning"}],
        "aggregation": {"group": {"wait": "1s"}},
        "enrichment": {"enabled": True, "log_tail": {"enabled": True}},
        "detectors": {"enabled": True, "check_interval": "200ms", "node_condition_after": "0s"},
        "ha": {
            "enabled": True,
            "namespace": namespace,
            "lease_duration": "6s",
            "renew_deadline": "4s",
        },
        "state": {"backend": "configmap", "namespace": namespace},
        "receivers": [{"name": "file", "type": "file", "path": str(directory / "alerts.jsonl")}],
        "ops": {"listen": f"127.0.0.1:{port}"},
    }


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except OSError as exc:  # refused while starting, 503 while not ready
        return getattr(exc, "code", 0), ""


def scrape(port: int) -> dict[str, list[Sample]]:
    """/metrics as Prometheus reads it: family name -> samples."""
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    families = {}
    for family in text_string_to_metric_families(text):
        # the parser names a counter's family without `_total`, a histogram's without suffix
        families[family.name] = family.samples
    return families


def samples_of(families: dict[str, list[Sample]], name: str) -> list[Sample]:
    return families.get(name.removesuffix("_total"), [])


def value(families: dict[str, list[Sample]], name: str, **labels: str) -> float | None:
    for sample in (s for samples in families.values() for s in samples):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


async def test_every_documented_metric_has_samples_in_a_running_daemon(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = control_plane
    ns = f"e2e-metrics-{uuid.uuid4().hex[:8]}"
    node = f"worker-{uuid.uuid4().hex[:8]}"
    plane.create_namespace(ns)
    port = free_port()
    path = tmp_path / "config.yaml"
    wanted = config(ns, tmp_path, port)
    path.write_text(yaml.safe_dump(wanted))
    log, alerts = tmp_path / "daemon.log", tmp_path / "alerts.jsonl"
    proc = await start_daemon(path, plane.kubeconfig)
    try:
        await eventually(
            lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, "ready", log, proc
        )
        not_ready_node(plane, node)
        pod = crash_looping_workload(plane, ns, node)
        plane.create_event(
            ns,
            f"web-backoff-{uuid.uuid4().hex[:6]}",
            {
                "kind": "Pod",
                "apiVersion": "v1",
                "namespace": ns,
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
            "BackOff",
            "Back-off restarting failed container app",
        )
        await eventually(lambda: records(alerts), "the alert", log, proc)

        # a valid change, then a broken config: one reload applied, one rejected
        assert proc.pid is not None
        for text, result in (
            (yaml.safe_dump({**wanted, "log": {"level": "debug"}}), "applied"),
            ("receivers: 3\n", "rejected"),
        ):
            path.write_text(text)
            os.kill(proc.pid, signal.SIGHUP)
            await eventually(
                lambda result=result: (
                    value(scrape(port), "kew_config_reloads_total", result=result) == 1
                ),
                f"the reload {result}",
                log,
                proc,
            )

        def with_a_finding() -> dict[str, list[Sample]] | None:
            families = scrape(port)
            found = any(s.value for s in samples_of(families, "kew_detector_findings_total"))
            return families if found else None

        families = await eventually(
            with_a_finding,
            "a detector finding",
            log,
            proc,
        )
    finally:
        await stop_daemon(proc)

    # A fleet's central instance's metrics are scraped in tests/e2e/test_fleet.py.
    empty = sorted(
        spec.name
        for spec in METRICS.values()
        if not samples_of(families, spec.name) and not spec.name.startswith("kew_fleet_")
    )
    assert empty == [], f"documented metrics without a sample: {empty}"

    # The daemon runs on uvloop unless told otherwise (ops/eventloop.py).
    assert value(families, "kew_build_info", version=__version__, event_loop="uvloop") == 1
    assert value(families, "kew_leader") == 1
    purposes = {
        s.labels["purpose"] for s in samples_of(families, "kew_api_requests_total") if s.value > 0
    }
    assert {"list", "watch", "lease", "state", "enrich"} <= purposes
    assert value(families, "kew_delivery_latency_seconds_count", receiver="file") >= 1
    assert value(families, "kew_delivery_latency_seconds_bucket", receiver="file", le="+Inf") >= 1
    assert value(families, "kew_notify_oldest_age_seconds", receiver="file") == 0
    assert value(families, "kew_notifications_total", receiver="file", outcome="delivered") >= 1
