"""Enrichment benchmark (not a test): API calls per alert in a storm, enrichment latency, and
cache memory per 10k Pods.

    .venv/bin/python bench/bench_enrich.py [--alerts 1000] [--pods 20] [--api-delay-ms 0 5]

The storm runs the real lookups (kube_event_watcher/kube/lookups.py, aiohttp, token bucket)
against the
loopback API double in tests/integration/fake_objects_api.py; `--api-delay-ms` adds a server
delay to every request to stand in for a real API server's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kube_event_watcher.clock import FakeClock, SystemClock
from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.lookups import enrichment_lookups
from kube_event_watcher.pipeline.cache import TtlCache
from kube_event_watcher.pipeline.enrich import Enricher, PodFacts, pod_facts
from kube_event_watcher.pipeline.model import Alert
from tests.factories import make_alert
from tests.fixtures import load_object
from tests.integration.fake_objects_api import FakeObjectsApi, crashloop_cluster


def pod_alert(name: str, n: int) -> Alert:
    return make_alert(
        "Pod",
        name,
        "shop",
        field_path="spec.containers{app}",
        cluster="fake",
        notification_id=f"n{n}",
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def storm(alerts: int, pods: int, api_delay: float, batch: int) -> dict[str, Any]:
    template = {
        "Pod": load_object("pod-crashloop"),
        "ReplicaSet": load_object("replicaset-web"),
        "Deployment": load_object("deployment-web"),
        "Node": load_object("node-ready"),
    }
    api = await FakeObjectsApi(crashloop_cluster(pods=pods, nodes=3, template=template)).start()
    api.delay = api_delay
    config = EnrichmentConfig()
    clock = SystemClock()
    http = KubeHttp(api.endpoint())
    enricher = Enricher({"fake": enrichment_lookups(http, config, clock)}, config, clock)
    latencies: list[float] = []

    async def timed(alert: Alert) -> Alert:
        start = time.perf_counter()
        out = await enricher.enrich(alert)
        latencies.append(time.perf_counter() - start)
        return out

    try:
        # One alert at a time first: the latency of a cold lookup (Pod, ReplicaSet, Node)
        # and of a cached answer, without queueing behind other alerts.
        cold, warm = [], []
        for i in range(pods):
            name = f"web-7d9f8c6b5-{i:05d}"
            for into in (cold, warm):
                start = time.perf_counter()
                await enricher.enrich(pod_alert(name, i))
                into.append(time.perf_counter() - start)
        api.requests.clear()
        await enricher.close()
        enricher = Enricher({"fake": enrichment_lookups(http, config, clock)}, config, clock)
        names = [f"web-7d9f8c6b5-{i % pods:05d}" for i in range(alerts)]
        started = time.perf_counter()
        partial = 0
        for offset in range(0, alerts, batch):
            chunk = names[offset : offset + batch]
            done = await asyncio.gather(
                *(timed(pod_alert(n, offset + i)) for i, n in enumerate(chunk))
            )
            partial += sum(1 for a in done if a.facts["enrichment"] != "complete")
        elapsed = time.perf_counter() - started
        calls = sum(api.requests.values())
        return {
            "alerts": alerts,
            "pods": pods,
            "api_delay_ms": api_delay * 1000,
            "api_calls": dict(api.requests),
            "api_calls_per_alert": calls / alerts,
            "pod_cache_hit_ratio": enricher.pods.stats().hit_ratio,
            "partial": partial,
            "one_at_a_time_cold_p50_ms": statistics.median(cold) * 1000,
            "one_at_a_time_cold_p99_ms": percentile(cold, 0.99) * 1000,
            "one_at_a_time_cached_p50_ms": statistics.median(warm) * 1000,
            "one_at_a_time_cached_p99_ms": percentile(warm, 0.99) * 1000,
            f"burst_of_{batch}_p50_ms": statistics.median(latencies) * 1000,
            f"burst_of_{batch}_p99_ms": percentile(latencies, 0.99) * 1000,
            "alerts_per_s": alerts / elapsed,
        }
    finally:
        await enricher.close()
        await http.close()
        await api.close()


def cache_memory(count: int) -> dict[str, float]:
    """Bytes per cached Pod: the trimmed facts the cache keeps vs the raw decoded objects."""
    raw_text = json.dumps(load_object("pod-crashloop"))

    def variants() -> list[dict[str, Any]]:
        out = []
        for i in range(count):
            pod = json.loads(raw_text)
            pod["metadata"]["name"] = f"web-7d9f8c6b5-{i:05d}"
            pod["metadata"]["uid"] = f"3f1c0d7e-1a2b-4c3d-9e8f-{i:012d}"
            pod["spec"]["nodeName"] = f"worker-{i % 50}"
            out.append(pod)
        return out

    def measure(build: Any) -> float:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        return (after - before) / count

    def raw_cache() -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in variants()}

    def trimmed_cache() -> TtlCache[tuple[str, str, str], PodFacts]:
        cache: TtlCache[tuple[str, str, str], PodFacts] = TtlCache(
            "pods", ttl=60, max_entries=count, negative_ttl=10, clock=FakeClock()
        )
        for pod in variants():
            cache.put(("prod", "shop", pod["metadata"]["name"]), pod_facts(copy.deepcopy(pod)))
        return cache

    # The raw variants are built and dropped inside trimmed_cache(), so its figure is what
    # stays: the cache's entries and the facts they hold.
    return {
        "raw_bytes_per_pod": measure(raw_cache),
        "trimmed_bytes_per_pod": measure(trimmed_cache),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="alerts enriched concurrently")
    parser.add_argument("--api-delay-ms", type=float, nargs="+", default=[0.0, 5.0])
    parser.add_argument("--memory-pods", type=int, default=10_000)
    args = parser.parse_args()
    for delay in args.api_delay_ms:
        result = asyncio.run(storm(args.alerts, args.pods, delay / 1000, args.batch))
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
        print(json.dumps({"storm": rounded}))
    memory = cache_memory(args.memory_pods)
    print(
        json.dumps(
            {
                "memory_per_10k_pods_MiB": {
                    k.replace("_bytes_per_pod", ""): round(v * 10_000 / 2**20, 2)
                    for k, v in memory.items()
                },
                "bytes_per_pod": {k: round(v) for k, v in memory.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
