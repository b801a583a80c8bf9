"""Reading a fleet's occurrence topic from Kafka: every partition assigned to this one
consumer (no consumer group: the position is the daemon's checkpoint, not Kafka's committed
offsets), each read from its checkpointed offset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog

from kube_event_watcher.backoff import Backoff
from kube_event_watcher.fleet.runner import Outage, StreamBatch, StreamRecord
from kube_event_watcher.notifiers.kafka import KafkaConfig, client_options, topic_partitions

log = structlog.get_logger(__name__)

MAX_RECORDS = 500  # a batch: read and aggregated under the lock at once
POLL_MS = 1000
PARTITION_CHECK = 60.0  # seconds between looks for partitions added to the topic


class KafkaStreamReader:
    def __init__(self, config: KafkaConfig, backoff: Backoff | None = None) -> None:
        self.config = config
        self.name = f"kafka:{config.topic}"
        self._backoff = backoff or Backoff(1.0, 30.0, 1.0)
        self._consumer: Any = None
        self.log = log.bind(stream=self.name)

    async def batches(
        self, positions: Mapping[str, int], start_time: float
    ) -> AsyncIterator[StreamBatch]:
        from aiokafka.errors import KafkaError

        outage = Outage(self.log, "occurrence topic", self._backoff)
        while True:
            try:
                consumer = await self._open()
                partitions, starts = await self._assign(consumer, positions, start_time)
                self.log.info(
                    "reading occurrences",
                    partitions=len(partitions),
                    new_partitions_start_at=starts or None,
                    after_failures=outage.recovered(),
                )
                yield StreamBatch([], starts)
                loop = asyncio.get_running_loop()
                checked = loop.time()
                while True:
                    got = await consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
                    records = [
                        StreamRecord(str(tp.partition), message.offset, message.value or b"")
                        for tp, messages in sorted(got.items(), key=lambda item: item[0].partition)
                        for message in messages
                    ]
                    yield StreamBatch(records, {})
                    if loop.time() - checked > PARTITION_CHECK:
                        checked = loop.time()
                        now = await topic_partitions(consumer, self.config.topic)
                        if set(now) != set(partitions):
                            self.log.info("the topic's partitions changed; assigning them again")
                            break
            except (KafkaError, OSError) as exc:
                servers = ", ".join(self.config.bootstrap_servers)
                delay = outage.failed(f"{type(exc).__name__}: {exc}", servers=servers)
                await self._drop()
                await asyncio.sleep(delay)

    async def _open(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        await self._drop()
        consumer = AIOKafkaConsumer(
            **client_options(self.config),
            group_id=None,
            enable_auto_commit=False,
            # Past the log's start (retention) the earliest record is next: `_assign` has
            # already said what was lost.
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.config.max_request_bytes,
        )
        try:
            await consumer.start()
        except BaseException:
            await _stop(consumer, self.config.timeout)
            raise
        self._consumer = consumer
        return consumer

    async def _assign(
        self, consumer: Any, positions: Mapping[str, int], start_time: float
    ) -> tuple[list[int], dict[str, int]]:
        """Assign every partition and seek: to its position, else to the first record at or
        after `start_time` (the end when there is none). Returns the partitions and where
        those without a position start."""
        from aiokafka import TopicPartition

        partitions = await topic_partitions(consumer, self.config.topic)
        tps = [TopicPartition(self.config.topic, p) for p in partitions]
        consumer.assign(tps)
        beginnings: dict[Any, int] = await consumer.beginning_offsets(tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        new = [tp for tp in tps if str(tp.partition) not in positions]
        by_time: dict[Any, Any] = (
            await consumer.offsets_for_times({tp: int(start_time * 1000) for tp in new})
            if new
            else {}
        )
        starts: dict[str, int] = {}
        for tp in tps:
            position = positions.get(str(tp.partition))
            if position is None:
                found = by_time.get(tp)
                position = found.offset if found is not None else ends[tp]
                starts[str(tp.partition)] = position
            elif position > ends[tp]:
                self.log.error(
                    "the topic is shorter than the checkpoint says (deleted and created "
                    "again?); reading it from its start",
                    partition=tp.partition,
                    checkpoint=position,
                    end=ends[tp],
                )
                position = beginnings[tp]
            elif position < beginnings[tp]:
                self.log.error(
                    "occurrences expired from the topic before they were read (retention "
                    "shorter than this instance was down); reading on from the oldest kept",
                    partition=tp.partition,
                    lost=beginnings[tp] - position,
                )
                position = beginnings[tp]
            consumer.seek(tp, position)
        return partitions, starts

    async def probe(self) -> str:
        from aiokafka import TopicPartition

        consumer = await self._open()
        try:
            partitions = await topic_partitions(consumer, self.config.topic)
            tps = [TopicPartition(self.config.topic, p) for p in partitions]
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
        finally:
            await self._drop()
        held = sum(ends[tp] - starts[tp] for tp in tps)
        return f"topic {self.config.topic}: {len(partitions)} partitions, {held:,} records held"

    async def _drop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _stop(consumer, self.config.timeout)

    async def close(self) -> None:
        await self._drop()


async def _stop(consumer: Any, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await consumer.stop()
    except Exception as exc:  # closing what failed: nothing more to do than say so
        log.debug("kafka consumer did not stop cleanly", error=str(exc))
