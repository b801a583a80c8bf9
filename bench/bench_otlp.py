"""The `otlp` receiver's throughput and CPU against a real OpenTelemetry Collector (OTLP/HTTP
receiver, file exporter: the one tests/e2e/engines/otelcol/build.sh builds and the e2e tests
start), beside a reference in the same run: bare aiohttp POSTs of the very bodies the
receiver sends (encoded and gzipped beforehand, outside the timing) to the same collector.
The ratio receiver / reference is what to compare between days (the machine's speed varies
2-3x); the CPU difference is what the receiver adds to bare HTTP per 1,000 alerts (building
the OTLP/JSON records, gzip, judging the answer). Each round runs both, alternating which
goes first; the collector's CPU is not counted (its own process).

    .venv/bin/python -m bench.bench_otlp [--alerts 10000] [--rounds 3]

Batch 1 sends `--alerts / 4` alerts a run, batch 100 `--alerts`; at the end the collector's
output must hold every record sent.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench.receivers import (
    Run,
    arguments,
    batches,
    delivered,
    load_average,
    print_table,
    spread,
    timed,
)
from kube_event_watcher.notifiers.http import HttpRequest
from kube_event_watcher.notifiers.otlp import OtlpConfig, OtlpNotifier
from kube_event_watcher.pipeline.model import Alert
from tests.e2e.engines.otelcol.collector import Collector, find_collector
from tests.factories import numbered_alert


def notifier_for(collector: Collector, batch: int) -> OtlpNotifier:
    return OtlpNotifier(
        OtlpConfig.model_validate(
            {
                "name": "bench",
                "type": "otlp",
                "endpoint": collector.endpoint,
                "resource_attributes": {"deployment.environment.name": "bench"},
                "batch_size": batch,
            }
        )
    )


async def receiver_run(collector: Collector, work: Sequence[Alert], batch: int) -> Run:
    """The receiver as the delivery lane drives it: `send_many`, `batch` alerts a request."""
    notifier = notifier_for(collector, batch)
    await notifier.start()
    try:
        send = delivered(notifier)
        await send([numbered_alert(-1)])  # warm-up: the connection is open
        return await timed(batches(work, batch), send, len(work))
    finally:
        await notifier.close()


async def raw_run(collector: Collector, work: Sequence[Alert], batch: int) -> Run:
    """The same requests, encoded beforehand, POSTed with a bare aiohttp session."""
    encoder = notifier_for(collector, batch)
    requests = [encoder.request_many(alerts) for alerts in batches(work, batch)]
    async with aiohttp.ClientSession() as session:

        async def post(request: HttpRequest) -> None:
            async with session.post(request.url, data=request.body, headers=request.headers) as r:
                await r.read()
                assert r.status == 200, r.status

        await post(encoder.request_many([numbered_alert(-1)]))  # warm-up
        return await timed(requests, post, len(work))


async def wait_records(collector: Collector, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (seen := len(collector.lines())) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the collector wrote {seen} records of {count}")
        await asyncio.sleep(0.5)


async def main() -> None:
    parser = arguments(__doc__ or "", alerts=10000, rounds=3)
    args = parser.parse_args()
    binary = find_collector()
    with tempfile.TemporaryDirectory(prefix="kew-bench-otlp-") as tmp:
        collector = Collector(binary, Path(tmp))
        collector.start()
        try:
            print(f"otelcol {binary.parent.name}, load average before: {load_average()}")
            receiver_rows, raw_rows, ratios = [], [], []
            sent = 0
            for batch in (1, 100):
                count = args.alerts if batch > 1 else args.alerts // 4
                receiver: list[Run] = []
                raw: list[Run] = []
                for n in range(args.rounds):
                    first = sent
                    work = [numbered_alert(first + i) for i in range(count)]
                    if n % 2 == 0:
                        receiver.append(await receiver_run(collector, work, batch))
                        raw.append(await raw_run(collector, work, batch))
                    else:
                        raw.append(await raw_run(collector, work, batch))
                        receiver.append(await receiver_run(collector, work, batch))
                    sent += 2 * (count + 1)
                receiver_rows.append((batch, receiver))
                raw_rows.append((batch, raw))
                ratios.append(
                    (
                        batch,
                        [a.rate / b.rate for a, b in zip(receiver, raw, strict=True)],
                        [a.cpu_ms - b.cpu_ms for a, b in zip(receiver, raw, strict=True)],
                    )
                )
            print(f"load average after the runs: {load_average()}")
            await wait_records(collector, sent)
        finally:
            collector.stop()
    print("\nthe otlp receiver (send_many):")
    print_table(receiver_rows)
    print("\nreference: bare aiohttp POSTs of the same bodies, pre-encoded:")
    print_table(raw_rows)
    print("\n| batch_size | receiver / reference, alerts/s | CPU the receiver adds, ms per 1,000 |")
    print("| ---: | --- | --- |")
    for batch, rate_ratios, extra_cpu in ratios:
        low, mid, high = spread(rate_ratios)
        clow, cmid, chigh = spread(extra_cpu)
        print(
            f"| {batch} | {low:.2f} / {mid:.2f} / {high:.2f} "
            f"| {clow:.0f} / {cmid:.0f} / {chigh:.0f} |"
        )
    print(f"\nthe collector wrote all {sent} records")


if __name__ == "__main__":
    asyncio.run(main())
