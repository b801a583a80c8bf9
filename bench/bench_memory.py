"""Memory at scale and start-up time: the daemon (a subprocess) against a fake list server.

For each size N (0 = idle), the daemon starts with no checkpoint against `bench.listserver`,
which serves N live Events page by page (the daemon's default page size, 500) and then an
idle watch. Reported: time from spawn to the first API request and to the watch opening
(start-up to first watch; for N > 0 that includes the relist), RSS once the watch is open
(and settled), and peak RSS (VmHWM). Not a test: figures go to bench/RESULTS.md
(tests/unit/test_bench_smoke.py runs it with a tiny N).

    .venv/bin/python -m bench.bench_memory --sizes 0 100000 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bench_latency import daemon_command, status_kib
from bench.listserver import ListServer


@dataclass
class MemoryRun:
    size: int
    first_request: float
    first_watch: float
    rss_mib: float
    hwm_mib: float
    served: int


async def one(size: int, timeout: float, settle: float) -> MemoryRun:
    server = ListServer(size)
    await server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="kew-bench-mem-") as tmp:
            work = Path(tmp)
            config = {
                "sources": [{"namespaces": [server.namespace]}],
                "state": {"backend": "file", "path": str(work / "state")},
                "receivers": [{"name": "out", "type": "stdout"}],
                "log": {"level": "warning", "format": "json"},
            }
            command = daemon_command(config, work, server.write_kubeconfig(work / "kubeconfig"))
            log = (work / "daemon.log").open("wb")
            started = time.time()
            process = await asyncio.create_subprocess_exec(
                *command, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                while server.first_watch is None:
                    if process.returncode is not None or time.time() - started > timeout:
                        raise RuntimeError(
                            "the daemon did not open its watch: "
                            + (work / "daemon.log").read_text()[-2000:]
                        )
                    await asyncio.sleep(0.01)
                await asyncio.sleep(settle)
                rss = status_kib(process.pid, "VmRSS") / 1024
                hwm = status_kib(process.pid, "VmHWM") / 1024
            finally:
                if process.returncode is None:
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                log.close()
    finally:
        await server.stop()
    assert server.first_request is not None
    return MemoryRun(
        size,
        server.first_request - started,
        server.first_watch - started,
        rss,
        hwm,
        server.served,
    )


def fmt(values: list[float], spec: str) -> str:
    return " / ".join(
        format(v, spec) for v in (min(values), statistics.median(values), max(values))
    )


def main(argv: list[str] | None = None) -> list[MemoryRun]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after watch open")
    args = parser.parse_args(argv)
    runs: list[MemoryRun] = []
    print(f"load average: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print(
        "| live events | first request s | watch open s | RSS MiB | peak RSS MiB |\n"
        "| ---: | --- | --- | --- | --- |"
    )
    for size in args.sizes:
        mine = [asyncio.run(one(size, args.timeout, args.settle)) for _ in range(args.repeat)]
        assert all(r.served == size for r in mine), "the daemon did not list every event"
        runs += mine
        print(
            f"| {size:,} | {fmt([r.first_request for r in mine], '.2f')} "
            f"| {fmt([r.first_watch for r in mine], '.2f')} "
            f"| {fmt([r.rss_mib for r in mine], '.1f')} "
            f"| {fmt([r.hwm_mib for r in mine], '.1f')} |",
            flush=True,
        )
    print(f"load average: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return runs


if __name__ == "__main__":
    main()
