"""Fleet mode in process. An edge's occurrence publisher gets every occurrence before
aggregation while its receivers of alerts still get grouped alerts; an edge with only a
publisher keeps no windows. A central instance reads a stream (an in-memory reader here:
the real engines are in tests/e2e/test_fleet.py) and continues from its checkpoint after a
restart, skipping a malformed record with its reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.daemon import AGGREGATION_DOCUMENT
from kube_event_watcher.fleet.runner import StreamBatch, StreamReader, StreamRecord
from kube_event_watcher.notifiers.stream import RECORDS
from kube_event_watcher.pipeline.model import Alert
from kube_event_watcher.state.file import FileStore
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble
from tests.factories import occurrence
from tests.support.daemon import running_daemon
from tests.support.recording import RecordingNotifier

KAFKA = {"type": "kafka", "bootstrap_servers": ["kafka:9092"], "topic": "kew-occurrences"}


class PublishingRecorder(RecordingNotifier):
    """Stands for a Kafka/NATS receiver with `records: occurrences`."""

    @property
    def takes_occurrences(self) -> bool:
        return True


def edge_config(*receivers: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": list(receivers),
        "aggregation": {"group": {"by": ["cluster", "namespace", "owner"], "wait": "200ms"}},
    }


async def test_an_edge_publishes_every_occurrence_and_still_groups_for_its_own_receivers(
    api_double: RunningDouble,
) -> None:
    api = api_double.api
    local, fleet = RecordingNotifier("team"), PublishingRecorder("fleet")
    config = edge_config(
        {"name": "team", "type": "stdout"},
        {"name": "fleet", "records": "occurrences", **KAFKA},
    )
    async with running_daemon(api_double.kubeconfig, MemoryStore(), [local, fleet], config):
        await api.wait_watches(1)
        for i in range(5):
            await api.create_event("shop", "BackOff", f"web-7d4b9c5f8-{i:05d}")
        published = await fleet.wait_for(5)
        grouped = await local.wait_for(1)
    assert len(published) == 5 and len(grouped) == 1
    assert sorted(a.occurrences[0].regarding.name for a in published) == [
        f"web-7d4b9c5f8-{i:05d}" for i in range(5)
    ]
    assert all(len(a.occurrences) == 1 and not a.group_key for a in published)
    assert grouped[0].member_count == 5  # the local receiver: one message for the five


async def test_an_edge_with_only_a_publisher_keeps_no_aggregation_windows(
    api_double: RunningDouble,
) -> None:
    api = api_double.api
    store = MemoryStore()
    fleet = PublishingRecorder("fleet")
    config = edge_config({"name": "fleet", "records": "occurrences", **KAFKA})
    async with running_daemon(api_double.kubeconfig, store, [fleet], config) as daemon:
        await api.wait_watches(1)
        for i in range(3):
            await api.create_event("shop", "BackOff", f"web-{i}")
        await fleet.wait_for(3)
        await daemon.commit()
    assert await store.load(AGGREGATION_DOCUMENT) is None
    assert len(fleet.alerts) == 3


class MemoryStream:
    """A stream of one partition in memory, read the way the real readers read: from the
    positions handed in, a missing one from the first record at or after the start time."""

    name = "memory:occurrences"

    def __init__(self) -> None:
        self.bodies: list[tuple[float, bytes]] = []  # (published at, body)
        self.asked: list[tuple[dict[str, int], float]] = []
        self._more = asyncio.Event()

    def publish(self, body: bytes, at: float = 0.0) -> None:
        self.bodies.append((at, body))
        self._more.set()

    async def batches(
        self, positions: Mapping[str, int], start_time: float
    ) -> AsyncIterator[StreamBatch]:
        self.asked.append((dict(positions), start_time))
        starts = {}
        if "0" not in positions:
            later = [i for i, (at, _) in enumerate(self.bodies) if at >= start_time]
            starts["0"] = later[0] if later else len(self.bodies)
        yield StreamBatch([], starts)
        while True:
            offset = positions["0"]
            records = [StreamRecord("0", i, b) for i, (_, b) in enumerate(self.bodies)][offset:]
            if records:
                yield StreamBatch(records, {})
            self._more.clear()
            await self._more.wait()

    async def close(self) -> None:
        pass


def published(name: str, at: float = 0.0) -> bytes:
    return RECORDS["occurrences"].message(Alert.from_occurrence(occurrence(name, at=at)))


async def central(
    stream: MemoryStream, store: FileStore, clock: FakeClock, max_age: str = "0s"
) -> Any:
    def readers(_config: Any) -> StreamReader:
        return stream

    recorder = RecordingNotifier()
    config = {
        "fleet": {"consume": KAFKA, "startup_max_age": max_age},
        "state": {"backend": "file", "path": str(store.directory)},
    }
    return recorder, running_daemon(
        Path("/nonexistent"), store, recorder, config, clock=clock, stream_readers=readers
    )


async def test_a_central_reads_from_its_start_then_continues_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    stream = MemoryStream()
    stream.publish(published("before-start"), at=clock.now() - 60)
    recorder, daemon = await central(stream, FileStore(str(tmp_path)), clock)
    async with daemon:
        stream.publish(published("web-1"), at=clock.now())
        stream.publish(published("web-2"), at=clock.now())
        await recorder.wait_for(2)
    # The first start read from its own start on (startup_max_age 0), not what came before.
    assert [a.regarding.name for a in recorder.alerts] == ["web-1", "web-2"]
    stream.publish(b'{"schema": "kube-event-watcher/occurrence/v1"}')
    stream.publish(published("web-3"), at=clock.now())
    recorder, daemon = await central(stream, FileStore(str(tmp_path)), clock)
    with capture_logs() as logs:
        async with daemon as running:
            await recorder.wait_for(1)
            assert running.fleet.records == {"read": 2, "malformed": 1}
    # After the restart: exactly what came after the checkpoint, the malformed record
    # skipped with its reason (and not read again).
    assert [a.regarding.name for a in recorder.alerts] == ["web-3"]
    assert stream.asked[-1][0] == {"0": 3}
    skipped = [e for e in logs if e["event"] == "malformed occurrence record skipped"]
    assert len(skipped) == 1 and "missing required field" in skipped[0]["reason"]
    assert skipped[0]["offset"] == 3


async def test_a_central_first_start_reads_back_as_far_as_its_age_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    stream = MemoryStream()
    stream.publish(published("too-old"), at=clock.now() - 3600)
    stream.publish(published("recent"), at=clock.now() - 60)
    recorder, daemon = await central(stream, FileStore(str(tmp_path)), clock, max_age="10m")
    async with daemon:
        await recorder.wait_for(1)
    assert [a.regarding.name for a in recorder.alerts] == ["recent"]
    assert stream.asked[0] == ({}, clock.now() - 600)
