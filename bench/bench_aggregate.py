"""Aggregation stage benchmark (not a test): throughput and memory per live key.

    .venv/bin/python bench/bench_aggregate.py [--events 500000] [--keys 100000]

1. Throughput: a stream of occurrences over 2,000 objects and 4 reasons (mostly repeats of
   live keys, as in a real storm), fed through `Aggregator.add` with `tick` at every deadline
   (the daemon's pattern) on the default config. Reports occurrences/s.
2. Memory: 100k distinct live keys (every occurrence a new Pod, 2,000 workloads), measured
   with tracemalloc (Python heap held by the aggregator) and RSS growth, plus snapshot size.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
import tracemalloc
import zlib

from kube_event_watcher.config.aggregation import AggregationConfig
from kube_event_watcher.pipeline.aggregate import Aggregator
from kube_event_watcher.pipeline.model import ObjectRef, Occurrence

T0 = 1_800_000_000.0
REASONS = ("BackOff", "Unhealthy", "FailedMount", "FailedScheduling")


def make(i: int, obj: int, reason: str, at: float) -> Occurrence:
    name = f"app{obj % 2000}-7d4b9c5f8-{obj:05d}"
    return Occurrence(
        cluster="prod",
        uid=f"ev-{obj}-{reason}",
        name=f"{name}.{i}",
        namespace=f"ns{obj % 50}",
        resource_version=str(i),
        type="Warning",
        reason=reason,
        note="Back-off restarting failed container app in pod",
        action="",
        regarding=ObjectRef("Pod", f"ns{obj % 50}", name, f"{obj:08d}-0000-4000-8000-000000000000"),
        reporting_controller="kubelet",
        reporting_instance="node-1",
        count=1,
        total=i,
        first_seen=at,
        last_seen=at,
    )


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def throughput(events: int) -> None:
    rng = random.Random(1)
    stream = [
        make(i, rng.randrange(2000), rng.choice(REASONS), T0 + i * 0.001) for i in range(events)
    ]
    agg = Aggregator(AggregationConfig())
    sent = 0
    start = time.perf_counter()
    next_tick = T0
    for occ in stream:
        now = occ.last_seen
        sent += len(agg.add(occ, now))
        if now >= next_tick:  # the daemon's tick task: wakes at the next deadline
            sent += len(agg.tick(now))
            next_tick = agg.next_deadline() or now + 1.0
    sent += len(agg.tick(T0 + events * 0.001 + 3600))
    elapsed = time.perf_counter() - start
    print(
        f"throughput: {events} occurrences in {elapsed:.2f} s = {events / elapsed:,.0f}/s "
        f"({agg.live_keys} live keys, {sent} notifications)"
    )


def memory(keys: int) -> None:
    stream = [make(i, i, "BackOff", T0 + i * 0.001) for i in range(keys)]
    config = AggregationConfig.model_validate({"max_keys": max(keys, 100)})
    gc.collect()
    rss_before = rss_kib()
    tracemalloc.start()
    agg = Aggregator(config)
    for occ in stream:
        agg.add(occ, occ.last_seen)
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = rss_kib()
    # The stream's Occurrences are shared with the aggregator (it keeps their ObjectRef and
    # strings), so the figures include what a key pins of its occurrence.
    del stream
    gc.collect()
    rss_kept = rss_kib()
    start = time.perf_counter()
    snapshot = agg.snapshot()
    took = time.perf_counter() - start
    print(
        f"memory: {agg.live_keys} live keys in {agg.live_groups} groups: tracemalloc "
        f"{traced / 1e6:.1f} MB ({traced / agg.live_keys:.0f} B/key); RSS +"
        f"{(rss_after - rss_before) / 1024:.1f} MB with the input stream, "
        f"{(rss_kept - rss_before) / 1024:.1f} MB after dropping it"
    )
    print(
        f"snapshot: {len(snapshot) / 1e6:.1f} MB JSON in {took * 1000:.0f} ms, "
        f"{len(zlib.compress(snapshot, 6)) / 1e6:.1f} MB zlib"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    throughput(args.events)
    memory(args.keys)


if __name__ == "__main__":
    main()
