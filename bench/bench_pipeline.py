"""Pipeline throughput: a recorded watch stream through decode → normalize → ledger → filter
→ aggregate → route, with no network, on one core.

Prints events/s for each cut of the pipeline and for decoding the same lines only (orjson
and msgspec, every field: the references), measured in the same run, and the ratios. The
pipeline decodes as the watch does (kube/wire.py: only the fields it reads); "wire decode
only" shows that step alone. Not a test: run it by hand, figures go to
bench/RESULTS.md (tests/unit/test_bench_smoke.py runs it tiny so it does not rot).

    .venv/bin/python -m bench.bench_pipeline --lines 200000 --repeat 5
    .venv/bin/python -m bench.bench_pipeline --profile full   # cProfile of one full pass
    .venv/bin/python -m bench.compare_builds                  # compiled vs pure, alternating

It runs whichever build of the pipeline modules is imported (compiled by `make compile`, or
pure Python with KEW_PURE_PYTHON=1 through tests/support/pure_site); the report says which.

The stages are driven as the daemon drives them: the aggregator gets `now` (here the event's
own time, a simulated clock) and is ticked at its next deadline; every alert it returns is
routed with the route tree, inhibition and silences of config/routing.yaml.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import orjson
import yaml

import kube_event_watcher.pipeline.aggregate
import kube_event_watcher.pipeline.ledger
import kube_event_watcher.pipeline.normalize
from bench.stream import generate
from kube_event_watcher.config.aggregation import AggregationConfig
from kube_event_watcher.config.schema import Config, FiltersConfig
from kube_event_watcher.kube.wire import decode_watch_line
from kube_event_watcher.pipeline.aggregate import Aggregator
from kube_event_watcher.pipeline.filtering import EventFilter
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.normalize import MalformedEvent, Normalizer
from kube_event_watcher.pipeline.route import RoutingStage

clock = time.perf_counter
"""What the cuts are timed with; `--cpu-time` makes it this process's CPU time, which a
shared machine's other loads disturb far less than the wall clock (bench/RESULTS.md)."""

ROUTING_CONFIG = Path(__file__).resolve().parent.parent / "config" / "routing.yaml"
DROP = {"drop": [{"reason": "^(Pulled|Scheduled)$"}]}


def _decode_all(lines: list[bytes], decode: Callable[[bytes], object]) -> tuple[float, int]:
    start = clock()
    for line in lines:
        decode(line)
    return clock() - start, len(lines)


def decode_only(lines: list[bytes]) -> tuple[float, int]:
    """The reference: orjson decoding every field of every line."""
    return _decode_all(lines, orjson.loads)


def msgspec_decode_only(lines: list[bytes]) -> tuple[float, int]:
    """The issue's reference: msgspec decoding every field of every line, untyped."""
    return _decode_all(lines, msgspec.json.Decoder().decode)


def wire_decode_only(lines: list[bytes]) -> tuple[float, int]:
    """What the watch does to a line before the pipeline: decode the fields it reads."""
    return _decode_all(lines, decode_watch_line)


def to_filter(lines: list[bytes]) -> tuple[float, int]:
    """decode → normalize → ledger → filter: the occurrences that pass."""
    normalizer = Normalizer("bench", SeenLedger())
    keep = EventFilter(FiltersConfig.model_validate(DROP)).passes
    decode = decode_watch_line
    apply = normalizer.apply
    passed = 0
    start = clock()
    for line in lines:
        frame = decode(line)
        try:
            occurrence = apply(frame.type, frame.object)
        except MalformedEvent:
            continue
        if occurrence is not None and keep(occurrence):
            passed += 1
    return clock() - start, passed


def routing_stage() -> RoutingStage:
    raw = yaml.safe_load(ROUTING_CONFIG.read_text())
    raw.pop("ops", None)
    return RoutingStage.from_config(Config.model_validate(raw))


def full(lines: list[bytes], aggregation: AggregationConfig) -> tuple[float, int]:
    """decode → normalize → ledger → filter → aggregate → route: the alerts routed."""
    normalizer = Normalizer("bench", SeenLedger())
    keep = EventFilter(FiltersConfig.model_validate(DROP)).passes
    aggregator = Aggregator(aggregation)
    router = routing_stage()
    decode = decode_watch_line
    apply = normalizer.apply
    add = aggregator.add
    decide = router.decide
    routed = 0
    next_tick = 0.0
    start = clock()
    for line in lines:
        frame = decode(line)
        try:
            occurrence = apply(frame.type, frame.object)
        except MalformedEvent:
            continue
        if occurrence is None or not keep(occurrence):
            continue
        now = occurrence.last_seen
        alerts = add(occurrence, now)
        if now >= next_tick:  # the daemon's tick task wakes at the next deadline
            alerts += aggregator.tick(now)
            next_tick = aggregator.next_deadline() or now + 1.0
        for alert in alerts:
            if decide(alert, now).deliver_to:
                routed += 1
    return clock() - start, routed


def cuts(aggregation: bool) -> dict[str, Callable[[list[bytes]], tuple[float, int]]]:
    return {
        "decode only": decode_only,
        "msgspec decode only": msgspec_decode_only,
        "wire decode only": wire_decode_only,
        "→ filter": to_filter,
        "→ aggregate → route": lambda lines: full(lines, AggregationConfig()),
        "→ route (aggregation off)": lambda lines: full(lines, AggregationConfig(enabled=False)),
    }


def build() -> str:
    """Which build of the pipeline modules this process runs: compiled if any is."""
    stages = (
        kube_event_watcher.pipeline.normalize,
        kube_event_watcher.pipeline.ledger,
        kube_event_watcher.pipeline.aggregate,
    )
    paths = [module.__file__ or "" for module in stages]
    return "pure Python" if all(p.endswith(".py") for p in paths) else "compiled (mypyc)"


def measure(lines: list[bytes], repeat: int) -> dict[str, tuple[list[float], int]]:
    """Per cut: the seconds of each round (every cut once a round), its output count."""
    results: dict[str, tuple[list[float], int]] = {}
    for _ in range(repeat):
        for name, run in cuts(aggregation=True).items():
            gc.collect()
            seconds, out = run(lines)
            results.setdefault(name, ([], out))[0].append(seconds)
    return results


def ratios(results: dict[str, tuple[list[float], int]], cut: str, reference: str) -> list[float]:
    """Per round: the reference cut's time over this cut's (1.0 = as fast as the reference)."""
    return [r / c for r, c in zip(results[reference][0], results[cut][0], strict=True)]


def report(lines: list[bytes], results: dict[str, tuple[list[float], int]]) -> str:
    size = sum(map(len, lines)) / len(lines)
    out = [f"lines: {len(lines):,} (avg {size:.0f} bytes), build: {build()}"]
    out.append(
        "| cut | events/s min / median / max | ratio to decode-only (orjson, median)"
        " | ratio to msgspec decode-only (min / median / max) | out |"
    )
    out.append("| --- | --- | --- | --- | --- |")
    for name, (seconds, count) in results.items():
        rates = [len(lines) / s for s in seconds]
        rate = f"{min(rates):,.0f} / {statistics.median(rates):,.0f} / {max(rates):,.0f}"
        to_orjson = statistics.median(ratios(results, name, "decode only"))
        to_msgspec = ratios(results, name, "msgspec decode only")
        spread = " / ".join(
            f"{x:.2f}" for x in (min(to_msgspec), statistics.median(to_msgspec), max(to_msgspec))
        )
        out.append(f"| {name} | {rate} | {to_orjson:.2f} | {spread} | {count:,} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument(
        "--shape",
        choices=["apiserver", "lean"],
        default="apiserver",
        help="objects as the API server serves them (default), or the first, leaner stream",
    )
    parser.add_argument(
        "--profile", choices=["full", "filter"], help="cProfile one pass and print the top"
    )
    parser.add_argument(
        "--json", action="store_true", help="seconds per round and cut, for bench.compare_builds"
    )
    parser.add_argument(
        "--cpu-time", action="store_true", help="time with process CPU time, not the wall clock"
    )
    args = parser.parse_args(argv)
    global clock
    clock = time.process_time if args.cpu_time else time.perf_counter
    lines = generate(args.lines, objects=args.objects, shape=args.shape)
    if args.profile:
        run = cuts(aggregation=True)[
            "→ aggregate → route" if args.profile == "full" else "→ filter"
        ]
        profile = cProfile.Profile()
        profile.runcall(run, lines)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    results = measure(lines, args.repeat)
    if args.json:
        print(json.dumps({"build": build(), "lines": len(lines), "results": results}))
        return
    print(report(lines, results))


if __name__ == "__main__":
    main()
