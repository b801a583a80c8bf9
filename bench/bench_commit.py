"""Commit cost per event: the whole checkpoint rewritten (before the journal) against the
journal's change records (now), on the same ledger, in one run.

A commit does two things: under the daemon's lock it takes the cut (the stream waits), then
a worker thread writes it and fsyncs. Before the journal, each commit serialized a scope's
whole ledger (~27 bytes a live event) and atomically rewrote its file; now it serializes the
uids that changed since the last commit and appends them to `state.journal`, and rewrites
the whole state only once the appended records outgrow it (their cost is shared out over
the events of that interval and included below). Not a test: the figures go to
bench/RESULTS.md (tests/unit/test_bench_smoke.py runs it tiny so it does not rot).

    .venv/bin/python -m bench.bench_commit --live 100000 1000000 --per-commit 1 200 --commits 20
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kube_event_watcher.daemon import Checkpoint
from kube_event_watcher.kube.watching import WatchScope
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.state.file import FileStore, atomic_write

SCOPE = WatchScope("bench", None, None)


@dataclass
class Cost:
    lock_us: list[float]  # per commit: taking the cut under the lock
    write_us: list[float]  # per commit: writing it durably (the worker thread's part)
    bytes_written: list[int]  # per commit

    def per_event(self, events: int, rebase: tuple[float, int, int] | None = None) -> str:
        """µs (lock + write) and bytes per event; `rebase`: (µs, bytes, events between
        rebases) of the full rewrite the journal makes now and then, shared out."""
        lock = statistics.median(self.lock_us) / events
        write = statistics.median(self.write_us) / events
        written = statistics.median(self.bytes_written) / events
        if rebase is not None:
            us, size, every = rebase
            write += us / every
            written += size / every
        return f"{lock:,.1f} + {write:,.1f} µs | {written:,.0f} B"


def live_ledger(size: int) -> tuple[SeenLedger, list[str]]:
    ledger = SeenLedger()
    uids = [str(uuid.uuid4()) for _ in range(size)]
    for i, uid in enumerate(uids):
        ledger.observe(uid, i % 7 + 1)
    return ledger, uids


def events(ledger: SeenLedger, uids: list[str], count: int, start: int) -> None:
    """`count` occurrences as a busy cluster has them: half new events, half series bumps."""
    for i in range(count):
        if i % 2:
            uid = uids[(start + i) * 7919 % len(uids)]
            ledger.observe(uid, (ledger.seen_count(uid) or 0) + 1)
        else:
            uid = str(uuid.uuid4())
            uids.append(uid)
            ledger.observe(uid, 1)


def whole_rewrite(ledger: SeenLedger, uids: list[str], per_commit: int, commits: int) -> Cost:
    cost = Cost([], [], [])
    checkpoint = Checkpoint("12345", ledger)
    with tempfile.TemporaryDirectory(prefix="kew-bench-") as tmp:
        path = Path(tmp) / "watch.json"
        for n in range(commits):
            events(ledger, uids, per_commit, n * per_commit)
            gc.collect()
            start = time.perf_counter()
            data = checkpoint.to_json(SCOPE, 0.0)
            taken = time.perf_counter()
            atomic_write(path, data)
            done = time.perf_counter()
            cost.lock_us.append((taken - start) * 1e6)
            cost.write_us.append((done - taken) * 1e6)
            cost.bytes_written.append(len(data))
    return cost


def journal(
    ledger: SeenLedger, uids: list[str], per_commit: int, commits: int
) -> tuple[Cost, tuple[float, int, int]]:
    cost = Cost([], [], [])
    ledger.track_changes()
    checkpoint = Checkpoint("12345", ledger)

    async def run() -> tuple[float, int]:
        with tempfile.TemporaryDirectory(prefix="kew-bench-") as tmp:
            store = FileStore(tmp)
            base = checkpoint.to_json(SCOPE, 0.0)
            ledger.take_changes()
            start = time.perf_counter()
            await store.save({"watch": base}, full=True)
            rebase_us = (time.perf_counter() - start) * 1e6
            for n in range(commits):
                events(ledger, uids, per_commit, n * per_commit)
                gc.collect()
                start = time.perf_counter()
                change = checkpoint.change_json(0.0)
                taken = time.perf_counter()
                await store.save({}, {"watch": change})
                done = time.perf_counter()
                cost.lock_us.append((taken - start) * 1e6)
                cost.write_us.append((done - taken) * 1e6)
                cost.bytes_written.append(len(change) + 16)  # + record and entry headers
            return rebase_us, len(base)

    rebase_us, base_bytes = asyncio.run(run())
    # A full rewrite comes once the changes written outgrow the state (or 8 MiB).
    per_event = statistics.median(cost.bytes_written) / per_commit
    every = int(max(base_bytes, 8 * 1024 * 1024) / per_event)
    return cost, (rebase_us, base_bytes, every)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--live", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--per-commit", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--commits", type=int, default=20)
    args = parser.parse_args(argv)
    print(
        "| live events | events a commit | whole rewrite: µs (lock + write) a event, bytes | "
        "journal: µs (lock + write) a event, bytes | write ratio |"
    )
    print("| ---: | ---: | --- | --- | ---: |")
    for live in args.live:
        for per_commit in args.per_commit:
            ledger, uids = live_ledger(live)
            before = whole_rewrite(ledger, uids, per_commit, args.commits)
            ledger, uids = live_ledger(live)
            after, rebase = journal(ledger, uids, per_commit, args.commits)
            ratio = statistics.median(before.bytes_written) / (
                statistics.median(after.bytes_written) + rebase[1] / rebase[2] * per_commit
            )
            print(
                f"| {live:,} | {per_commit} | {before.per_event(per_commit)} | "
                f"{after.per_event(per_commit, rebase)} | {ratio:,.0f}x |"
            )


if __name__ == "__main__":
    main()
