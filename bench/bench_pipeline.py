"""Pipeline throughput: a recorded watch stream through decode → normalize → ledger → filter.

Prints events/s for the pipeline and for orjson-decode-only of the same lines, measured in
the same run, and their ratio. Not a test: run it by hand, figures go to bench/RESULTS.md.

    .venv/bin/python -m bench.bench_pipeline --lines 200000 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import orjson

from bench.stream import generate
from watcher.config.schema import FiltersConfig
from watcher.pipeline.filtering import EventFilter
from watcher.pipeline.ledger import SeenLedger
from watcher.pipeline.normalize import MalformedEvent, Normalizer


def decode_only(lines: list[bytes]) -> float:
    start = time.perf_counter()
    loads = orjson.loads
    for line in lines:
        loads(line)
    return time.perf_counter() - start


def pipeline(lines: list[bytes]) -> tuple[float, int]:
    normalizer = Normalizer("bench", SeenLedger())
    keep = EventFilter(
        FiltersConfig.model_validate({"drop": [{"reason": "^(Pulled|Scheduled)$"}]})
    ).passes
    loads = orjson.loads
    apply = normalizer.apply
    passed = 0
    start = time.perf_counter()
    for line in lines:
        frame = loads(line)
        try:
            occurrence = apply(frame["type"], frame["object"])
        except MalformedEvent:
            continue
        if occurrence is not None and keep(occurrence):
            passed += 1
    return time.perf_counter() - start, passed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lines = generate(args.lines)
    size = sum(map(len, lines)) / len(lines)
    decode_rates, pipe_rates, ratios = [], [], []
    passed = 0
    for _ in range(args.repeat):
        gc.collect()
        d = decode_only(lines)
        gc.collect()
        p, passed = pipeline(lines)
        decode_rates.append(len(lines) / d)
        pipe_rates.append(len(lines) / p)
        ratios.append(d / p)

    def fmt(values: list[float]) -> str:
        median = statistics.median(values)
        return f"min {min(values):,.0f} / median {median:,.0f} / max {max(values):,.0f}"

    print(
        f"lines: {len(lines):,} (avg {size:.0f} bytes), occurrences passing the filter: {passed:,}"
    )
    print(f"decode only      events/s: {fmt(decode_rates)}")
    print(f"decode→normalize→ledger→filter, events/s: {fmt(pipe_rates)}")
    median = statistics.median(ratios)
    print(f"ratio pipeline/decode-only: min {min(ratios):.2f} / median {median:.2f}")


if __name__ == "__main__":
    main()
