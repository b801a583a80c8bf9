"""What the receiver throughput benches share (bench_streaming: Kafka, bench_nats: NATS,
bench_otlp: OTLP/HTTP): send distinct alerts `batch` at a time through a notifier's
`send_many`, as the delivery lane does with a backlog, each batch answered before the next;
the rate in alerts/s and this process's CPU (user + system, `time.process_time`: the
engine's own process is not counted) per 1,000 alerts; min / median / max over rounds.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kube_event_watcher.notifiers.base import Delivered, Notifier
from kube_event_watcher.pipeline.model import Alert

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run: alerts/s and CPU ms per 1,000 alerts."""

    rate: float
    cpu_ms: float


def arguments(doc: str, alerts: int, rounds: int) -> argparse.ArgumentParser:
    """The options every receiver bench takes: `--alerts` a run, `--rounds` per batch size."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=alerts, help="alerts a run")
    parser.add_argument("--rounds", type=int, default=rounds, help="runs per batch size")
    return parser


def batches(alerts: Sequence[Alert], batch: int) -> list[Sequence[Alert]]:
    return [alerts[start : start + batch] for start in range(0, len(alerts), batch)]


def delivered(notifier: Notifier) -> Callable[[Sequence[Alert]], Awaitable[None]]:
    """`notifier.send_many`, failing the run on anything but Delivered."""

    async def send(alerts: Sequence[Alert]) -> None:
        result = await notifier.send_many(alerts)
        assert isinstance(result, Delivered), result

    return send


async def timed(items: Sequence[T], send: Callable[[T], Awaitable[None]], alerts: int) -> Run:
    """Send every item in order, each awaited before the next; `alerts` they carry in all."""
    wall, cpu = time.perf_counter(), time.process_time()
    for item in items:
        await send(item)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Run(alerts / wall, cpu * 1000 * 1000 / alerts)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """min, median (the middle one; the lower of two), max."""
    ordered = sorted(values)
    return ordered[0], ordered[(len(ordered) - 1) // 2], ordered[-1]


def rates_cell(runs: Sequence[Run]) -> str:
    low, mid, high = spread([run.rate for run in runs])
    return f"{low:,.0f} / {mid:,.0f} / {high:,.0f}"


def cpu_cell(runs: Sequence[Run]) -> str:
    low, mid, high = spread([run.cpu_ms for run in runs])
    return f"{low:.0f} / {mid:.0f} / {high:.0f}"


def load_average() -> str:
    """The 1/5/15-minute load averages, to print beside the figures (a shared machine)."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def print_table(rows: Sequence[tuple[int, Sequence[Run]]]) -> None:
    """One row per batch size: alerts/s and CPU ms per 1,000 alerts, min / median / max."""
    print(
        "| batch_size | alerts/s (min / median / max) "
        "| CPU ms per 1,000 alerts (min / median / max) |"
    )
    print("| ---: | --- | --- |")
    for batch, runs in rows:
        print(f"| {batch} | {rates_cell(runs)} | {cpu_cell(runs)} |")
