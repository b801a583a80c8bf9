"""Streaming receivers: alerts/s to a real Kafka broker and the daemon-side CPU per 1,000.

    .venv/bin/python -m bench.bench_streaming [--alerts 20000] [--batch 100]

Starts the test broker (tests/e2e/engines/kafka: Apache Kafka 4.4, KRaft, one node, on
loopback), creates a 3-partition topic and sends distinct alerts through KafkaNotifier's
`send_many`, `--batch` at a time, as the delivery lane does with a backlog; each batch is
acknowledged by the broker (acks=all) before the next. CPU is this process's (user + system),
not the broker's.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kube_event_watcher.notifiers.base import Delivered
from kube_event_watcher.notifiers.kafka import KafkaConfig, KafkaNotifier
from kube_event_watcher.notifiers.sample import sample_alert
from tests.e2e.engines.kafka.broker import KafkaBroker, find_jars


async def run(bootstrap: str, state: Path, count: int, batch: int) -> tuple[float, float]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("bench", 3, 1)])
    await admin.close()
    config = KafkaConfig(
        name="bench", type="kafka", bootstrap_servers=[bootstrap], topic="bench", batch_size=batch
    )
    notifier = KafkaNotifier(config)
    notifier.state_dir = state
    await notifier.start()
    base = sample_alert(time.time())
    alerts = [
        replace(base, key=f"group-{i % 500}", notification_id=f"bench-{i:07d}")
        for i in range(count)
    ]
    assert isinstance(await notifier.send_many(alerts[:batch]), Delivered)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(batch, count, batch):
        result = await notifier.send_many(alerts[start : start + batch])
        assert isinstance(result, Delivered), result
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await notifier.close()
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        KafkaBroker(find_jars(), Path(tmp) / "kafka") as broker,
    ):
        deadline = time.monotonic() + 30
        while True:  # the port opens a moment before the broker takes requests
            try:
                wall, cpu = asyncio.run(run(broker.bootstrap, Path(tmp), args.alerts, args.batch))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    sent = args.alerts - args.batch
    print(
        f"kafka: {sent} alerts in batches of {args.batch}: {sent / wall:,.0f} alerts/s, "
        f"{cpu / sent * 1000 * 1000:.0f} ms CPU per 1,000 alerts (wall {wall:.2f} s)"
    )


if __name__ == "__main__":
    main()
