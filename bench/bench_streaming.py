"""Streaming receivers: alerts/s to a real Kafka broker and the daemon-side CPU per 1,000.

    .venv/bin/python -m bench.bench_streaming [--alerts 20000] [--batch 100 ...] [--rounds 1]

Starts the test broker (tests/e2e/engines/kafka: Apache Kafka 4.4, KRaft, one node, on
loopback), creates a 3-partition topic per run and sends distinct alerts through
KafkaNotifier's `send_many`, `--batch` at a time, as the delivery lane does with a backlog;
each batch is acknowledged by the broker (acks=all) before the next (bench/receivers.py).
CPU is this process's (user + system), not the broker's.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.receivers import Run, arguments, batches, delivered, load_average, print_table, timed
from kube_event_watcher.notifiers.kafka import KafkaConfig, KafkaNotifier
from kube_event_watcher.notifiers.sample import sample_alert
from tests.e2e.engines.kafka.broker import KafkaBroker, find_jars


async def run(bootstrap: str, state: Path, topic: str, count: int, batch: int) -> Run:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1)])
    await admin.close()
    config = KafkaConfig(
        name="bench", type="kafka", bootstrap_servers=[bootstrap], topic=topic, batch_size=batch
    )
    notifier = KafkaNotifier(config)
    notifier.state_dir = state
    await notifier.start()
    base = sample_alert(time.time())
    alerts = [
        replace(base, key=f"group-{i % 500}", notification_id=f"{topic}-{i:07d}")
        for i in range(count)
    ]
    send = delivered(notifier)
    await send(alerts[:batch])  # warm-up: connected, the partitions' leaders known
    work = alerts[batch:]
    try:
        return await timed(batches(work, batch), send, len(work))
    finally:
        await notifier.close()


def main() -> None:
    parser = arguments(__doc__ or "", alerts=20000, rounds=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[100])
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        KafkaBroker(find_jars(), Path(tmp) / "kafka") as broker,
    ):
        rows = []
        n = 0
        for batch in args.batch:
            runs = []
            for _ in range(args.rounds):
                deadline = time.monotonic() + 30
                while True:  # the port opens a moment before the broker takes requests
                    n += 1  # a topic of its own each attempt
                    try:
                        state = Path(tmp) / f"state-{n}"
                        state.mkdir(exist_ok=True)
                        runs.append(
                            asyncio.run(
                                run(broker.bootstrap, state, f"bench{n}", args.alerts, batch)
                            )
                        )
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
            rows.append((batch, runs))
    print(f"kafka, {args.alerts} alerts a run (the first batch a warm-up, not timed)")
    print_table(rows)
    print(f"load average (1 / 5 / 15 min) at the end: {load_average()}")


if __name__ == "__main__":
    main()
