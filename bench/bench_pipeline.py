"""Pipeline throughput: a recorded watch stream through decode → normalize → ledger → filter
→ aggregate → route, with no network, on one core.

Prints events/s for each cut of the pipeline and for orjson-decode-only of the same lines
(every field, the reference), measured in the same run, and the ratios. The pipeline decodes
as the watch does (kube/wire.py: only the fields it reads); "wire decode only" shows that
step alone. Not a test: run it by hand, figures go to
bench/RESULTS.md (tests/unit/test_bench_smoke.py runs it tiny so it does not rot).

    .venv/bin/python -m bench.bench_pipeline --lines 200000 --repeat 5
    .venv/bin/python -m bench.bench_pipeline --profile full   # cProfile of one full pass

The stages are driven as the daemon drives them: the aggregator gets `now` (here the event's
own time, a simulated clock) and is ticked at its next deadline; every alert it returns is
routed with the route tree, inhibition and silences of config/routing.yaml.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import yaml

from bench.stream import generate
from watcher.config.aggregation import AggregationConfig
from watcher.config.schema import Config, FiltersConfig
from watcher.kube.wire import decode_watch_line
from watcher.pipeline.aggregate import Aggregator
from watcher.pipeline.filtering import EventFilter
from watcher.pipeline.ledger import SeenLedger
from watcher.pipeline.normalize import MalformedEvent, Normalizer
from watcher.pipeline.route import RoutingStage

ROUTING_CONFIG = Path(__file__).resolve().parent.parent / "config" / "routing.yaml"
DROP = {"drop": [{"reason": "^(Pulled|Scheduled)$"}]}


def _decode_all(lines: list[bytes], decode: Callable[[bytes], object]) -> tuple[float, int]:
    start = time.perf_counter()
    for line in lines:
        decode(line)
    return time.perf_counter() - start, len(lines)


def decode_only(lines: list[bytes]) -> tuple[float, int]:
    """The reference: orjson decoding every field of every line."""
    return _decode_all(lines, orjson.loads)


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
    start = time.perf_counter()
    for line in lines:
        frame = decode(line)
        try:
            occurrence = apply(frame["type"], frame["object"])
        except MalformedEvent:
            continue
        if occurrence is not None and keep(occurrence):
            passed += 1
    return time.perf_counter() - start, passed


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
    start = time.perf_counter()
    for line in lines:
        frame = decode(line)
        try:
            occurrence = apply(frame["type"], frame["object"])
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
    return time.perf_counter() - start, routed


def cuts(aggregation: bool) -> dict[str, Callable[[list[bytes]], tuple[float, int]]]:
    return {
        "decode only": decode_only,
        "wire decode only": wire_decode_only,
        "→ filter": to_filter,
        "→ aggregate → route": lambda lines: full(lines, AggregationConfig()),
        "→ route (aggregation off)": lambda lines: full(lines, AggregationConfig(enabled=False)),
    }


def measure(lines: list[bytes], repeat: int) -> dict[str, tuple[list[float], list[float], int]]:
    """Per cut: events/s of each run, ratio to decode-only of the same round, output count."""
    results: dict[str, tuple[list[float], list[float], int]] = {}
    for _ in range(repeat):
        decode_seconds = 0.0
        for name, run in cuts(aggregation=True).items():
            gc.collect()
            seconds, out = run(lines)
            if name == "decode only":
                decode_seconds = seconds
            rates, ratios, _ = results.setdefault(name, ([], [], 0))
            rates.append(len(lines) / seconds)
            ratios.append(decode_seconds / seconds)
            results[name] = (rates, ratios, out)
    return results


def report(lines: list[bytes], results: dict[str, tuple[list[float], list[float], int]]) -> str:
    size = sum(map(len, lines)) / len(lines)
    out = [f"lines: {len(lines):,} (avg {size:.0f} bytes)"]
    out.append("| cut | events/s min / median / max | ratio to decode-only (median) | out |")
    out.append("| --- | --- | --- | --- |")
    for name, (rates, ratios, count) in results.items():
        rate = f"{min(rates):,.0f} / {statistics.median(rates):,.0f} / {max(rates):,.0f}"
        out.append(f"| {name} | {rate} | {statistics.median(ratios):.2f} | {count:,} |")
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
    args = parser.parse_args(argv)
    lines = generate(args.lines, objects=args.objects, shape=args.shape)
    if args.profile:
        run = cuts(aggregation=True)[
            "→ aggregate → route" if args.profile == "full" else "→ filter"
        ]
        profile = cProfile.Profile()
        profile.runcall(run, lines)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    print(report(lines, measure(lines, args.repeat)))


if __name__ == "__main__":
    main()
