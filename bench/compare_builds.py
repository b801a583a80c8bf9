"""The pipeline bench on both builds of the pipeline modules, alternating in one run:
compiled (mypyc, `make compile`) and pure Python (KEW_PURE_PYTHON=1), one process per round
each, so a load change on the shared machine lands on both.

    make compile && .venv/bin/python -m bench.compare_builds --rounds 4 --lines 200000

Prints, per cut and build, events/s and the ratio to msgspec decoding every field of the
same lines in the same process (min / median / max over all rounds), then compiled/pure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE_SITE = ROOT / "tests" / "support" / "pure_site"
BUILDS = {"compiled": {}, "pure": {"KEW_PURE_PYTHON": "1"}}
REFERENCE = "msgspec decode only"

Rounds = dict[str, list[float]]  # cut → seconds, every round of one build


def run_once(build: str, bench_args: list[str]) -> tuple[int, dict[str, list[float]]]:
    env = {**os.environ, **BUILDS[build]}
    if build == "pure":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PURE_SITE), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_pipeline", "--json", *bench_args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(done.stdout.splitlines()[-1])
    want = "pure Python" if build == "pure" else "compiled (mypyc)"
    if doc["build"] != want:
        raise SystemExit(f"asked for the {build} build, the bench ran {doc['build']}")
    return doc["lines"], {cut: seconds for cut, (seconds, _) in doc["results"].items()}


def spread(values: list[float], fmt: str) -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4, help="processes per build")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1, help="passes per process")
    parser.add_argument("--shape", choices=["apiserver", "lean"], default="apiserver")
    args = parser.parse_args(argv)
    bench_args = ["--lines", str(args.lines), "--repeat", str(args.repeat), "--shape", args.shape]
    seen: dict[str, Rounds] = {build: {} for build in BUILDS}
    lines = 0
    for number in range(args.rounds):
        order = list(BUILDS) if number % 2 == 0 else list(reversed(BUILDS))
        for build in order:
            lines, results = run_once(build, bench_args)
            for cut, seconds in results.items():
                seen[build].setdefault(cut, []).extend(seconds)
            print(f"round {number + 1} {build}: done", file=sys.stderr, flush=True)
    print(f"lines: {lines:,}, shape {args.shape}, {args.rounds} rounds x {args.repeat} passes")
    print(
        "| cut | build | events/s min / median / max"
        " | ratio to msgspec decode-only min / median / max | compiled / pure (median) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for cut in seen["compiled"]:
        medians = {}
        for build in BUILDS:
            seconds = seen[build][cut]
            rates = [lines / s for s in seconds]
            to_ref = [r / s for r, s in zip(seen[build][REFERENCE], seconds, strict=True)]
            medians[build] = statistics.median(rates)
            gain = medians["compiled"] / medians["pure"] if build == "pure" else None
            print(
                f"| {cut} | {build} | {spread(rates, '{:,.0f}')} | {spread(to_ref, '{:.2f}')}"
                f" | {f'{gain:.2f}x' if gain else ''} |"
            )


if __name__ == "__main__":
    main()
