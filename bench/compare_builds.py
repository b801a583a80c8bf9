"""The pipeline bench on both builds of the pipeline modules, alternating in one run:
compiled (mypyc, `make compile`) and pure Python (KEW_PURE_PYTHON=1), one process per round
each, so a load change on the shared machine lands on both.

    make compile && .venv/bin/python -m bench.compare_builds --rounds 4 --lines 200000

`--baseline DIR` adds a second tree (e.g. `git archive <commit>` with its own `setup.py
build_ext --inplace`), both builds of it, to the same alternation: before/after a change.

Prints, per cut and variant, events/s and the ratio to msgspec decoding every field of the
same lines in the same process (min / median / max over all rounds), and each variant's
median events/s against the first variant's (this tree, compiled).
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
WANT = {"compiled": "compiled (mypyc)", "pure": "pure Python"}
REFERENCE = "msgspec decode only"

Rounds = dict[str, list[float]]  # cut → seconds, every round of one build


def run_once(tree: Path, build: str, bench_args: list[str]) -> tuple[int, Rounds]:
    """One bench process on `tree` (its watcher comes first on sys.path: `-m` in its cwd)."""
    env = {**os.environ, **BUILDS[build]}
    if build == "pure":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PURE_SITE), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_pipeline", "--json", *bench_args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(done.stdout.splitlines()[-1])
    if doc["build"] != WANT[build]:
        raise SystemExit(f"asked {tree} for the {build} build, the bench ran {doc['build']}")
    return doc["lines"], {cut: seconds for cut, (seconds, _) in doc["results"].items()}


def spread(values: list[float], fmt: str) -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4, help="processes per variant")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1, help="passes per process")
    parser.add_argument("--shape", choices=["apiserver", "lean"], default="apiserver")
    parser.add_argument("--baseline", type=Path, help="another tree to run in the alternation")
    parser.add_argument("--cpu-time", action="store_true", help="bench_pipeline --cpu-time")
    args = parser.parse_args(argv)
    bench_args = ["--lines", str(args.lines), "--repeat", str(args.repeat), "--shape", args.shape]
    bench_args += ["--cpu-time"] if args.cpu_time else []
    trees = {"": ROOT, **({"baseline ": args.baseline.resolve()} if args.baseline else {})}
    variants = [(label + build, tree, build) for label, tree in trees.items() for build in BUILDS]
    seen: dict[str, Rounds] = {name: {} for name, _, _ in variants}
    lines = 0
    for number in range(args.rounds):
        for name, tree, build in variants if number % 2 == 0 else variants[::-1]:
            lines, results = run_once(tree, build, bench_args)
            for cut, seconds in results.items():
                seen[name].setdefault(cut, []).extend(seconds)
            print(f"round {number + 1} {name}: done", file=sys.stderr, flush=True)
    first = variants[0][0]
    timed = "CPU time" if args.cpu_time else "wall clock"
    print(
        f"lines: {lines:,}, shape {args.shape}, {args.rounds} rounds x {args.repeat} passes,"
        f" {timed}"
    )
    print(
        "| cut | variant | events/s min / median / max"
        f" | ratio to msgspec decode-only min / median / max | median vs {first} |"
    )
    print("| --- | --- | --- | --- | --- |")
    for cut in seen[first]:
        base = statistics.median(lines / s for s in seen[first][cut])
        for name, _, _ in variants:
            seconds = seen[name][cut]
            rates = [lines / s for s in seconds]
            to_ref = [r / s for r, s in zip(seen[name][REFERENCE], seconds, strict=True)]
            versus = statistics.median(rates) / base
            print(
                f"| {cut} | {name} | {spread(rates, '{:,.0f}')} | {spread(to_ref, '{:.2f}')}"
                f" | {versus:.2f}x |"
            )


if __name__ == "__main__":
    main()
