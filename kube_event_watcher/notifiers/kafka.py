"""Apache Kafka: each alert is one record on a topic (aiokafka, the `kafka` extra).

Record value = `stream_message(alert)` (schema `kube-event-watcher/alert/v1`), key =
`stream_key(alert)` (a group's firing, repeats and resolve land on one partition, in order),
headers = `stream_headers(alert)`. The producer is idempotent with `acks=all`: `Delivered`
only once every in-sync replica has the record.

Exactly once as a consumer counts it (docs/streaming.md, "Exactly once"): the idempotent
producer drops its own retries, but not a re-send by a new producer after a crash (the spool
re-sends what it had not acked, with the same `notification_id`). So beside the spool this
receiver keeps a small offset ledger, per partition the offset at or after which its
not-yet-acknowledged records lie, written before it produces. Whenever it cannot know what
landed (after a start, a failed or cut-short send) it first reads the topic from those
offsets to its end, collects the `kew-notification-id` headers found, and answers
`Delivered` for those alerts without producing them again. The read is bounded by what the
last few sends produced (`LEDGER_LAG`), not by the topic's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
import structlog
from pydantic import Field, SecretStr, model_validator

from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.model import SecretsModel
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.stream import (
    HEADER_NOTIFICATION_ID,
    RECORDS,
    StreamReceiverConfig,
)
from kube_event_watcher.pipeline.model import Alert

log = structlog.get_logger(__name__)

# How many sends back the ledger stays: the delivery lane writes a send's spool ack right
# after `Delivered`, but while a spool write runs in its thread the ack waits for it
# (ReceiverLane._ack), so the last send's records may still count as pending after a crash.
LEDGER_LAG = 4
LEDGER_VERSION = 1

Offsets = dict[int, int]


class KafkaSecurityConfig(SecretsModel):
    """SASL (PLAIN, SCRAM-SHA-256/512) and/or TLS to the brokers."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "SASL_SSL"
    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurityConfig:
        if self.protocol.startswith("SASL_") and (not self.username or self.password is None):
            raise ValueError(
                f"security.protocol {self.protocol} needs security.username and "
                "security.password (or password_file)"
            )
        if self.key_file and not self.cert_file:
            raise ValueError("security.key_file needs security.cert_file (the client certificate)")
        return self


class KafkaConfig(StreamReceiverConfig):
    bootstrap_servers: list[str] = Field(
        min_length=1, description="host:port of one or more brokers"
    )
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    client_id: str = "kube-event-watcher"
    security: KafkaSecurityConfig | None = None
    acks: Literal["all"] = Field(
        default="all",
        description="fixed: a record counts as delivered once every in-sync replica has it",
    )
    linger: Duration = Field(
        default=0.005, ge=0, description="how long the producer gathers records"
    )
    batch_size: int = Field(default=100, ge=1, le=10000, description="alerts per send")
    max_request_bytes: int = Field(default=1048576, ge=1024)
    timeout: Duration = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _servers_have_ports(self) -> KafkaConfig:
        for server in self.bootstrap_servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"bootstrap_servers: expected host:port, got {server!r}")
        return self


def ledger_file_name(receiver: str) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in receiver)
    return f"kafka-{safe}.offsets.json"


def read_ledger(path: Path, topic: str) -> Offsets | None:
    """The ledger's offsets for `topic`; None when there is none (or it is another topic's)."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"unreadable Kafka offset ledger {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("topic") != topic:
        return None
    return {int(p): int(o) for p, o in data.get("partitions", {}).items()}


def write_ledger(path: Path, topic: str, offsets: Offsets) -> None:
    """Write-and-rename (a kill -9 leaves the old or the new file). Not fsynced: an older
    ledger is always safe (the read after a start only goes further back)."""
    body = {
        "version": LEDGER_VERSION,
        "topic": topic,
        "partitions": {str(p): o for p, o in sorted(offsets.items())},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(body))
    os.replace(tmp, path)


def lowest(snapshots: Iterable[Offsets]) -> Offsets:
    """Per partition, the lowest offset any snapshot has."""
    low: Offsets = {}
    for snapshot in snapshots:
        for partition, offset in snapshot.items():
            low[partition] = min(offset, low.get(partition, offset))
    return low


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection settings of every client of `cfg`'s brokers: this receiver's producer and
    reading consumer, and a fleet's central instance reading the same topic (fleet/kafka.py)."""
    options: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "client_id": cfg.client_id,
        "request_timeout_ms": int(cfg.timeout * 1000),
        "retry_backoff_ms": 100,
        "metadata_max_age_ms": 60_000,
    }
    sec = cfg.security
    if sec is not None:
        options["security_protocol"] = sec.protocol
        if sec.protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=sec.ca_file)
            if sec.cert_file:
                context.load_cert_chain(sec.cert_file, sec.key_file)
            options["ssl_context"] = context
        if sec.protocol.startswith("SASL_"):
            options["sasl_mechanism"] = sec.mechanism
            options["sasl_plain_username"] = sec.username
            assert sec.password is not None  # the model checks it
            options["sasl_plain_password"] = sec.password.get_secret_value()
    return options


async def topic_partitions(consumer: Any, topic: str) -> list[int]:
    """The topic's partitions, from fresh metadata; its absence and a refused read are the
    errors aiokafka would raise for them."""
    from aiokafka.errors import TopicAuthorizationFailedError, UnknownTopicOrPartitionError

    cluster = await consumer._client.fetch_all_metadata()
    if topic in cluster.unauthorized_topics:
        raise TopicAuthorizationFailedError(topic)
    partitions = cluster.partitions_for_topic(topic)
    if not partitions:
        raise UnknownTopicOrPartitionError(topic)
    return sorted(partitions)


class KafkaNotifier(Notifier):
    config_model: ClassVar[type[ReceiverConfig]] = KafkaConfig
    # Kafka takes far more than a daemon sends; the lane need not throttle.
    default_rate_limit: ClassVar[RateLimitConfig | None] = None
    # Each record is an alert a consumer processes on its own: no digests.
    can_digest: ClassVar[bool] = False
    resolved_by_default: ClassVar[bool] = True

    def __init__(self, config: KafkaConfig) -> None:
        super().__init__(config)
        self.config: KafkaConfig = config
        self.records = RECORDS[config.records]
        self._producer: Any = None
        # Offsets after this receiver's last acknowledged records, per partition.
        self._frontier: Offsets = {}
        # The frontier at the start of each of the last sends (the ledger is their lowest).
        self._snapshots: deque[Offsets] = deque(maxlen=LEDGER_LAG)
        self._written: Offsets | None = None
        # notification_id -> (partition, offset) of records found on the topic, not yet
        # answered Delivered to the lane.
        self._landed: dict[str, tuple[int, int]] = {}
        # Whether records of ours may be on the topic that `_landed` does not know about.
        self._uncertain = True
        # Alerts to answer before what is left of `_landed` is known to be acked already.
        self._unanswered = 0
        self._lock = asyncio.Lock()
        self.log = log.bind(receiver=self.name, topic=config.topic)

    # -- the client ---------------------------------------------------------------------------

    @property
    def _ledger_path(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / ledger_file_name(self.name)

    async def _open_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            producer = AIOKafkaProducer(
                **client_options(self.config),
                acks="all",
                enable_idempotence=True,
                linger_ms=int(self.config.linger * 1000),
                max_request_size=self.config.max_request_bytes,
            )
            try:
                await producer.start()
            except BaseException:
                await _quietly(producer.stop(), self.config.timeout)
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        """After a failed send: a new producer, so nothing of the old one goes out after the
        topic was read (its batches are aborted, its connections closed)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly(producer.stop(), self.config.timeout)

    async def start(self) -> None:
        """Nothing connects here: a broker that is down at start must not stop the daemon
        (the first send reads the ledger and the topic, and says RetryAfter until it can)."""
        self._uncertain = True

    async def close(self) -> None:
        await self._drop_producer()

    # -- what landed ----------------------------------------------------------------------

    async def _recover(self) -> None:
        """Learn which of our records are on the topic past the ledger's offsets."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            **client_options(self.config),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            partitions = await topic_partitions(consumer, self.config.topic)
            tps = [TopicPartition(self.config.topic, p) for p in partitions]
            ends: dict[Any, int] = await consumer.end_offsets(tps)
            path = self._ledger_path
            ledger = None
            if path is not None:
                try:
                    ledger = read_ledger(path, self.config.topic)
                except ValueError as exc:
                    self.log.warning("reading the whole topic to find what landed", error=str(exc))
                    ledger = {}
            if not self._frontier and ledger is None:
                # First start for this topic: nothing of ours is on it yet.
                self._frontier = {tp.partition: ends[tp] for tp in tps}
                self._snapshots.clear()
                self._save_ledger(self._frontier)
                return
            landed = [{p: o} for p, o in self._landed.values()]
            known = [self._frontier, *self._snapshots, *landed]
            starts = lowest(known if ledger is None else [ledger, *known])
            beginnings: dict[Any, int] = await consumer.beginning_offsets(tps)
            todo = {}
            for tp in tps:
                start = max(starts.get(tp.partition, beginnings[tp]), beginnings[tp])
                if start < ends[tp]:
                    todo[tp] = (start, ends[tp])
            found = await self._read(consumer, todo)
        finally:
            await _quietly(consumer.stop(), self.config.timeout)
        self._landed.update(found)
        self._unanswered = LEDGER_LAG * self.config.batch_size
        for tp, (_, end) in todo.items():
            self._frontier[tp.partition] = max(self._frontier.get(tp.partition, 0), end)
        for tp in tps:
            self._frontier.setdefault(tp.partition, ends[tp])
        if found:
            self.log.info(
                "records already on the topic from before; they are not produced again",
                records=len(found),
            )

    async def _read(
        self, consumer: Any, todo: dict[Any, tuple[int, int]]
    ) -> dict[str, tuple[int, int]]:
        """The notification ids in the records of each partition's [start, end)."""
        found: dict[str, tuple[int, int]] = {}
        if not todo:
            return found
        consumer.assign(list(todo))
        for tp, (start, _) in todo.items():
            consumer.seek(tp, start)
        left = dict(todo)
        async with asyncio.timeout(self.config.timeout * 3):
            while left:
                batches = await consumer.getmany(*left, timeout_ms=200)
                for tp, messages in batches.items():
                    for message in messages:
                        for name, value in message.headers or ():
                            if name == HEADER_NOTIFICATION_ID:
                                found[value.decode()] = (tp.partition, message.offset)
                for tp in list(left):
                    # Past the end, or the end is a transaction marker (never delivered).
                    if await consumer.position(tp) >= left[tp][1]:
                        del left[tp]
        return found

    def _save_ledger(self, offsets: Offsets) -> None:
        path = self._ledger_path
        if path is None or offsets == self._written:
            return
        write_ledger(path, self.config.topic, offsets)
        self._written = dict(offsets)

    def _before_producing(self) -> None:
        """The ledger on disk must be at or below every record this send may produce."""
        self._snapshots.append(dict(self._frontier))
        landed = [{p: o} for p, o in self._landed.values()]
        self._save_ledger(lowest([*self._snapshots, *landed]))

    # -- sending --------------------------------------------------------------------------

    async def send(self, alert: Alert) -> DeliveryResult:
        return await self.send_many([alert])

    async def send_many(self, alerts: Sequence[Alert]) -> DeliveryResult:
        async with self._lock:
            return await self._send_many(alerts)

    async def _send_many(self, alerts: Sequence[Alert]) -> DeliveryResult:
        from aiokafka.errors import KafkaError

        produced = False
        try:
            if self._uncertain:
                await self._recover()
                self._uncertain = False
            todo = [a for a in alerts if a.notification_id not in self._landed]
            skipped = len(alerts) - len(todo)
            if not todo:
                self._forget(alerts)
                self.last_answer = f"already on {self.config.topic}"
                return Delivered(f"{skipped} already on the topic")
            self._before_producing()
            producer = await self._open_producer()
            produced = True
            self._uncertain = True  # until every record of this send is acknowledged
            async with asyncio.timeout(self.config.timeout):
                records = self.records
                futures = [
                    await producer.send(
                        self.config.topic,
                        records.message(alert),
                        key=records.key(alert).encode(),
                        headers=[(k, v.encode()) for k, v in records.headers(alert).items()],
                    )
                    for alert in todo
                ]
                results = await asyncio.gather(*futures)
        except TimeoutError:
            await self._after_failure(produced)
            return RetryAfter(f"Kafka did not acknowledge within {self.config.timeout:g}s")
        except KafkaError as exc:
            await self._after_failure(produced)
            return self._judge(exc)
        except OSError as exc:
            await self._after_failure(produced)
            return RetryAfter(
                f"cannot reach Kafka at {', '.join(self.config.bootstrap_servers)}: {exc}"
            )
        for metadata in results:
            partition = metadata.partition
            self._frontier[partition] = max(self._frontier.get(partition, 0), metadata.offset + 1)
        self._uncertain = False
        self._forget(alerts)
        last = results[-1]
        self.last_answer = f"partition {last.partition} offset {last.offset}"
        return Delivered(f"{len(results)} records on {self.config.topic}")

    def _forget(self, alerts: Sequence[Alert]) -> None:
        """The lane acks `alerts` now. What is left of `_landed` once as many alerts were
        answered as the ledger spans are records it had acked before the crash (the lane
        re-sends its pending alerts first, in order): forgotten, so the ledger moves on."""
        for alert in alerts:
            self._landed.pop(alert.notification_id, None)
        self._unanswered -= len(alerts)
        if self._unanswered <= 0:
            self._landed.clear()

    async def _after_failure(self, produced: bool) -> None:
        self._uncertain = True
        if produced:
            await self._drop_producer()

    def _judge(self, exc: Exception) -> DeliveryResult:
        from aiokafka import errors

        topic = self.config.topic
        if isinstance(exc, errors.UnknownTopicOrPartitionError):
            return PermanentFailure(
                f"topic {topic!r} does not exist and the brokers do not create it "
                "(auto.create.topics.enable=false): create it, or fix `topic`"
            )
        if isinstance(exc, errors.TopicAuthorizationFailedError):
            return PermanentFailure(
                f"not authorized to write to topic {topic!r}: grant WRITE (and DESCRIBE, READ "
                "for the recovery read) on it to this client's principal"
            )
        if isinstance(exc, errors.ClusterAuthorizationFailedError):
            return PermanentFailure(
                "not authorized for the idempotent producer: grant IDEMPOTENT_WRITE on the "
                "cluster to this client's principal"
            )
        if isinstance(exc, (errors.MessageSizeTooLargeError, errors.RecordTooLargeError)):
            return PermanentFailure(
                f"the record is larger than the producer's or the topic's limit "
                f"(max_request_bytes {self.config.max_request_bytes}, the topic's "
                "max.message.bytes): raise them or shorten the alert's template fields"
            )
        if isinstance(exc, errors.AuthenticationFailedError):
            return RetryAfter(f"Kafka refused the SASL login: {exc}", seconds=60)
        return RetryAfter(f"Kafka: {type(exc).__name__}: {exc}")


async def _quietly(stopping: Any, timeout: float) -> None:
    """Stop a client, bounded: a broker that is gone must not hold the caller."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await stopping
