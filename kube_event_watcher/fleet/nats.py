"""Reading a fleet's occurrence stream from NATS JetStream: an ephemeral pull consumer
without acks (the position is the daemon's checkpoint), made again from the checkpointed
sequence after any failure (a server restart drops an ephemeral consumer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from kube_event_watcher.backoff import Backoff
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.fleet.runner import Outage, StreamBatch, StreamRecord
from kube_event_watcher.notifiers.nats import (
    NatsConfig,
    connect_options,
    create_stream,
    subject_filter,
)

log = structlog.get_logger(__name__)

PART = "seq"  # one part: the stream's sequence
MAX_RECORDS = 500
POLL_SECONDS = 1.0
# An ephemeral consumer the server keeps this long without a fetch (a pause between our
# fetches is at most a batch's aggregation; a restart makes a new one anyway).
INACTIVE_THRESHOLD = 60.0


class NatsStreamMissing(OSError):
    """The stream is not there: retried like an outage (an edge may create it later)."""


class NatsStreamReader:
    def __init__(self, config: NatsConfig, backoff: Backoff | None = None) -> None:
        self.config = config
        self.name = f"nats:{config.stream}"
        self.subject = subject_filter(config.subject)
        self._backoff = backoff or Backoff(1.0, 30.0, 1.0)
        self._nc: Any = None
        self.log = log.bind(stream=self.name, subject=self.subject)

    async def _connect(self) -> Any:
        from nats.aio.client import Client

        if self._nc is None or self._nc.is_closed:
            nc = Client()
            await nc.connect(
                **connect_options(self.config, "kube-event-watcher/fleet"),
                allow_reconnect=True,
            )
            self._nc = nc
        return self._nc.jetstream()

    async def batches(
        self, positions: Mapping[str, int], start_time: float
    ) -> AsyncIterator[StreamBatch]:
        from nats.errors import Error as NatsError
        from nats.errors import TimeoutError as NatsTimeout

        outage = Outage(self.log, "occurrence stream", self._backoff)
        while True:
            subscription: Any = None
            try:
                js = await self._connect()
                subscription, starts = await self._subscribe(js, positions, start_time)
                self.log.info(
                    "reading occurrences",
                    from_sequence=positions.get(PART, starts.get(PART)),
                    after_failures=outage.recovered(),
                )
                yield StreamBatch([], starts)
                while True:
                    try:
                        messages = await subscription.fetch(MAX_RECORDS, timeout=POLL_SECONDS)
                    except NatsTimeout:
                        messages = []
                    yield StreamBatch(
                        [
                            StreamRecord(PART, m.metadata.sequence.stream, m.data or b"")
                            for m in messages
                        ],
                        {},
                    )
            except (TimeoutError, NatsError, OSError) as exc:
                delay = outage.failed(redact(f"{type(exc).__name__}: {exc}"))
                await asyncio.sleep(delay)
            finally:
                if subscription is not None:
                    await _quietly(subscription.unsubscribe())

    async def _subscribe(
        self, js: Any, positions: Mapping[str, int], start_time: float
    ) -> tuple[Any, dict[str, int]]:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        try:
            info = await js.stream_info(self.config.stream)
        except NotFoundError:
            if self.config.create_stream is None:
                raise NatsStreamMissing(
                    f"the JetStream stream {self.config.stream!r} does not exist (yet): the "
                    "edges' receiver creates it with create_stream, or give fleet.consume."
                    "create_stream to create it here"
                ) from None
            info = await create_stream(js, self.config, self.config.create_stream)
            self.log.info("created the JetStream stream", stream=self.config.stream)
        first, last = info.state.first_seq, info.state.last_seq
        position = positions.get(PART)
        starts: dict[str, int] = {}
        if position is None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.fromtimestamp(start_time, UTC),
            )
        else:
            if position > last + 1:
                self.log.error(
                    "the stream is shorter than the checkpoint says (deleted and created "
                    "again?); reading it from its start",
                    checkpoint=position,
                    last=last,
                )
                position = first
            elif position < first:
                self.log.error(
                    "occurrences expired from the stream before they were read (its max_age "
                    "or limits are shorter than this instance was down); reading on from the "
                    "oldest kept",
                    lost=first - position,
                )
                position = first
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(position, 1)
            )
        config.ack_policy = AckPolicy.NONE
        config.inactive_threshold = INACTIVE_THRESHOLD
        config.filter_subject = self.subject
        subscription = await js.pull_subscribe(
            self.subject, durable=None, stream=self.config.stream, config=config
        )
        if position is None:
            # Where the by-time start lies, so that a restart continues from it exactly.
            consumer = await subscription.consumer_info()
            starts[PART] = consumer.delivered.stream_seq + 1 if consumer.delivered else last + 1
        return subscription, starts

    async def probe(self) -> str:
        from nats.aio.client import Client
        from nats.js.errors import NotFoundError

        nc = Client()
        options = connect_options(self.config, "kube-event-watcher/doctor")
        await nc.connect(**{**options, "allow_reconnect": False, "max_reconnect_attempts": 0})
        try:
            info = await nc.jetstream().stream_info(self.config.stream)
        except NotFoundError:
            raise NatsStreamMissing(
                f"the JetStream stream {self.config.stream!r} does not exist"
            ) from None
        finally:
            await _quietly(nc.close())
        state = info.state
        subjects = ", ".join(info.config.subjects or [])
        return (
            f"stream {self.config.stream} ({subjects}): {state.messages:,} messages, "
            f"reading {self.subject}"
        )

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await _quietly(nc.close())


async def _quietly(closing: Any) -> None:
    try:
        async with asyncio.timeout(5):
            await closing
    except Exception as exc:  # closing what failed: nothing more to do than say so
        log.debug("nats close did not finish cleanly", error=str(exc))
