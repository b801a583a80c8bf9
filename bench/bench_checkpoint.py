"""Checkpoint cost at scale: writing and reading one watch scope's checkpoint document.

The daemon takes the checkpoint under its lock, in the event loop, every `commit_interval`
(1 s) while events arrive, so its cost is a stall of the event stream; reading it is part
of a restart's time to the first watch. Not a test: figures go to bench/RESULTS.md
(tests/unit/test_bench_smoke.py runs it tiny so it does not rot).

    .venv/bin/python -m bench.bench_checkpoint --sizes 100000 1000000 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import uuid

from kube_event_watcher.daemon import Checkpoint
from kube_event_watcher.kube.watching import WatchScope
from kube_event_watcher.pipeline.ledger import SeenLedger

SCOPE = WatchScope("bench", None, None)


def live_ledger(size: int, relisted: bool) -> SeenLedger:
    """`size` API-server uids (random UUIDs) with counts as a busy cluster has them;
    `relisted`: after a relist, when the entries carry the other generation bit."""
    ledger = SeenLedger()
    for i in range(size):
        ledger.observe(str(uuid.uuid4()), i % 7 + 1)
    if relisted:
        ledger.begin_relist()
        for uid, count in list(ledger.items()):
            ledger.observe(uid, count)
        ledger.end_relist()
    return ledger


def measure(size: int, repeat: int) -> dict[str, list[float]]:
    """Seconds per round: write (relisted or not) and read the checkpoint document."""
    times: dict[str, list[float]] = {"write": [], "write after a relist": [], "read": []}
    sizes: list[int] = []
    for relisted in (False, True):
        ledger = live_ledger(size, relisted)
        checkpoint = Checkpoint("12345", ledger)
        for _ in range(repeat):
            gc.collect()
            start = time.perf_counter()
            data = checkpoint.to_json(SCOPE, 0.0)
            times["write after a relist" if relisted else "write"].append(
                time.perf_counter() - start
            )
            sizes.append(len(data))
            if relisted:
                continue
            gc.collect()
            start = time.perf_counter()
            again = Checkpoint.from_json(data)
            times["read"].append(time.perf_counter() - start)
            assert len(again.ledger) == size
    times["bytes"] = [float(n) for n in sizes]
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print("| live events | document MB | write ms | write after a relist ms | read ms |")
    print("| ---: | ---: | --- | --- | --- |")
    for size in args.sizes:
        times = measure(size, args.repeat)

        def spread(name: str, times: dict[str, list[float]] = times) -> str:
            ms = [t * 1000 for t in times[name]]
            return f"{min(ms):.0f} / {statistics.median(ms):.0f} / {max(ms):.0f}"

        megabytes = statistics.median(times["bytes"]) / 1e6
        print(
            f"| {size:,} | {megabytes:.1f} | {spread('write')} | "
            f"{spread('write after a relist')} | {spread('read')} |"
        )


if __name__ == "__main__":
    main()
