"""The `nats` receiver's throughput and CPU against a real nats-server (JetStream, file store),
built by tests/e2e/engines/nats/build.sh: alerts/s and the daemon process's CPU time per 1,000
alerts, published one per request (`batch_size: 1`) and in batches (publish_async, acks
awaited together). The server runs in its own process; its CPU is not counted.

    .venv/bin/python -m bench.bench_nats [--alerts 20000] [--rounds 3]
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.receivers import Run, arguments, batches, delivered, load_average, print_table, timed
from kube_event_watcher.notifiers.base import Delivered
from kube_event_watcher.notifiers.nats import NatsConfig, NatsNotifier
from tests.e2e.engines.nats.server import NatsServer, build_nats_server, stream_count
from tests.factories import numbered_alert


async def one_run(server: NatsServer, stream: str, alerts: int, batch: int) -> Run:
    """`alerts` distinct alerts in batches of `batch`, into a stream of their own."""
    notifier = NatsNotifier(
        NatsConfig.model_validate(
            {
                "name": "bench",
                "type": "nats",
                "servers": [server.url],
                "subject": f"bench.{stream.lower()}.{{cluster}}",
                "stream": stream,
                "create_stream": {"max_age": "1h", "duplicate_window": "10m"},
                "batch_size": batch,
            }
        )
    )
    await notifier.start()
    try:
        assert isinstance(await notifier.send(numbered_alert(-1)), Delivered)  # connected
        work = [numbered_alert(i) for i in range(alerts)]
        run = await timed(batches(work, batch), delivered(notifier), alerts)
    finally:
        await notifier.close()
    assert await stream_count(server.url, stream) == alerts + 1
    return run


async def main() -> None:
    parser = arguments(__doc__ or "", alerts=20000, rounds=3)
    args = parser.parse_args()
    binary = build_nats_server()
    with tempfile.TemporaryDirectory(prefix="kew-bench-nats-") as tmp:
        server = NatsServer(binary, Path(tmp))
        with server:
            print(f"nats-server {binary.parent.name}, {args.alerts} alerts a run")
            rows = []
            n = 0
            for batch in (1, 100):
                runs = []
                count = args.alerts if batch > 1 else args.alerts // 4
                for _ in range(args.rounds):
                    n += 1
                    runs.append(await one_run(server, f"BENCH{n}", count, batch))
                rows.append((batch, runs))
            print_table(rows)
            print(f"load average (1 / 5 / 15 min) at the end: {load_average()}")


if __name__ == "__main__":
    asyncio.run(main())
