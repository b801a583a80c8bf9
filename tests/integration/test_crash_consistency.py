"""What was sent and what the checkpoint says is seen never disagree.

The failure these guard against (issue #14): alerts reached the receiver at once while the
checkpoint followed a second later; a kill in between, then a 410 on restart, made the
relist count the merged series bumps again under a new notification id. Now an alert goes
out only once a durable checkpoint covers it, and a restart drops what no checkpoint
covers. A store that refuses writes stands for the instant between spool and checkpoint:
it holds the daemon there as long as the test wants, and stopping it then leaves on disk
exactly what a kill -9 at that instant would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kube_event_watcher.notifiers.base import DeliveryResult
from kube_event_watcher.pipeline.model import Alert
from kube_event_watcher.state.file import FileStore
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble
from tests.notifiers_support import until
from tests.support.daemon import running_daemon
from tests.support.recording import RecordingNotifier


class RefusingStore(MemoryStore):
    """A MemoryStore whose commits fail while `refusing` (a full or read-only disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = False
        self.refused = 0

    async def save(
        self,
        documents: Mapping[str, bytes],
        changes: Mapping[str, bytes] | None = None,
        *,
        full: bool = False,
    ) -> None:
        if self.refusing:
            self.refused += 1
            raise OSError(28, "No space left on device")
        await super().save(documents, changes, full=full)


def occurrences_by_event(*recorders: RecordingNotifier) -> dict[str, list[tuple[int, int]]]:
    """event uid → the (first_total, total) ranges the receivers got, in order."""
    out: dict[str, list[tuple[int, int]]] = {}
    for recorder in recorders:
        for alert in recorder.alerts:
            occ = alert.occurrences[0]
            out.setdefault(occ.uid, []).append((occ.total - occ.count + 1, occ.total))
    return out


async def test_a_kill_before_the_checkpoint_then_a_410_repeats_nothing(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    api, store, spool = api_double.api, RefusingStore(), tmp_path / "spool"
    first = RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, store, first, spool_dir=spool) as daemon:
        await api.wait_watches(1)
        event = await api.create_event("default", "OOMKilling", "db-0")
        await first.wait_for(1)
        store.refusing = True  # from here on, every commit fails: the instant before one
        await api.repeat_event(event, count=2)
        await api.repeat_event(event, count=3)
        lane = daemon.delivery.lanes["recorder"]
        await until(lambda: lane.queue_depth == 2, "both bumps spooled")
        await until(lambda: store.refused >= 1, "a checkpoint tried and failed")
        assert len(first.alerts) == 1, "no alert goes out before a checkpoint covers it"
    # Down: the event repeats twice more and etcd compacts, so the restart gets 410 and a
    # relist that shows only the merged count (5).
    await api.repeat_event(event, count=4)
    await api.repeat_event(event, count=5)
    late = await api.create_event("default", "BackOff", "web-1")
    api.compact()
    store.refusing = False
    second = RecordingNotifier()
    async with running_daemon(api_double.kubeconfig, store, second, spool_dir=spool) as daemon:
        await second.wait_for(2)
        marker = await api.create_event("default", "Marker", "m")
        await second.wait_for(3)
        assert daemon.watches[0].relists >= 1
    uid = event["metadata"]["uid"]
    assert occurrences_by_event(first, second) == {
        uid: [(1, 1), (2, 5)],  # each of the five occurrences once
        late["metadata"]["uid"]: [(1, 1)],
        marker["metadata"]["uid"]: [(1, 1)],
    }


async def test_a_full_disk_holds_alerts_and_loses_none_when_space_is_back(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    api, store, recorder = api_double.api, RefusingStore(), RecordingNotifier()
    config = {"state": {"backend": "memory", "commit_interval": "50ms"}}
    async with running_daemon(api_double.kubeconfig, store, recorder, config) as daemon:
        await api.wait_watches(1)
        await api.create_event("default", "BackOff", "web-0")
        await recorder.wait_for(1)
        store.refusing = True
        with capture_logs() as logs:
            held = [await api.create_event("default", "BackOff", f"web-{i}") for i in (1, 2, 3)]
            lane = daemon.delivery.lanes["recorder"]
            await until(lambda: lane.queue_depth == 3, "spooled, waiting for a checkpoint")
            await until(lambda: store.refused >= 2, "commits retried")
        assert len(recorder.alerts) == 1
        failures = [e for e in logs if e["event"].startswith("checkpoint write failed")]
        assert failures and "No space left on device" in failures[0]["error"]
        assert failures[0]["waiting_alerts"] >= 1
        assert daemon.commits["failed"] >= 2
        store.refusing = False
        await recorder.wait_for(4)
    assert recorder.event_uids[1:] == [e["metadata"]["uid"] for e in held]
    assert len(recorder.alerts) == 4, "each exactly once"


class DurabilityCheckingNotifier(RecordingNotifier):
    """Records, at each send, whether the alert's spool line was flushed to disk and a
    journal record (its checkpoint) flushed after that: what a machine crash would keep."""

    def __init__(self, flushes: list[tuple[str, bytes]]) -> None:
        super().__init__()
        self.flushes = flushes
        self.undurable: list[str] = []

    async def send(self, alert: Alert) -> DeliveryResult:
        marker = alert.notification_id.encode()
        spooled = [
            i for i, (kind, data) in enumerate(self.flushes) if kind == "spool" and marker in data
        ]
        journal = [i for i, (kind, _) in enumerate(self.flushes) if kind == "journal"]
        if not spooled or not any(j > spooled[0] for j in journal):
            self.undurable.append(alert.notification_id)
        return await super().send(alert)


async def test_an_alert_goes_out_only_after_its_spool_line_then_its_checkpoint_are_flushed(
    api_double: RunningDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool line is written without an fsync of its own and flushed by the commit that
    covers it, in the journal's thread, before the journal record: never the other order."""
    flushes: list[tuple[str, bytes]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        size = os.fstat(fd).st_size
        real_fsync(fd)
        if target.endswith(".spool.jsonl"):
            flushes.append(("spool", os.pread(fd, size, 0)))
        elif "state.journal" in target:
            flushes.append(("journal", b""))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    api, store = api_double.api, FileStore(str(tmp_path / "state"))
    recorder = DurabilityCheckingNotifier(flushes)
    async with running_daemon(api_double.kubeconfig, store, recorder) as daemon:
        await api.wait_watches(1)
        for i in range(20):
            await api.create_event("default", "BackOff", f"web-{i}")
        await recorder.wait_for(20)
        lane = daemon.delivery.lanes["recorder"]
    assert recorder.undurable == []
    assert lane.sent == 20


async def test_with_fsync_off_neither_spool_nor_journal_is_fsynced_and_a_restart_resumes(
    api_double: RunningDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`state.fsync: false`: no fsync of the spool or the journal, and what they hold (in
    the page cache) is what a restart resumes from: nothing is sent twice."""
    flushed: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    api, state, spool = api_double.api, tmp_path / "state", tmp_path / "spool"
    config = {"state": {"backend": "file", "path": str(state), "fsync": False}}
    first = RecordingNotifier()
    store = FileStore(str(state), fsync=False)
    async with running_daemon(
        api_double.kubeconfig, store, first, config=config, spool_dir=spool
    ) as daemon:
        await api.wait_watches(1)
        for i in range(10):
            await api.create_event("default", "BackOff", f"web-{i}")
        await first.wait_for(10)
        assert daemon.delivery.lanes["recorder"].spool.fsync is False
    assert [p for p in flushed if p.endswith((".spool.jsonl", "state.journal"))] == []

    second = RecordingNotifier()
    store = FileStore(str(state), fsync=False)
    async with running_daemon(
        api_double.kubeconfig, store, second, config=config, spool_dir=spool
    ) as daemon:
        await api.wait_watches(2)
        await api.create_event("default", "BackOff", "web-new")
        await second.wait_for(1)
    # A re-sent alert would come first: the spool's unacknowledged lines go out in order.
    assert [a.occurrences[0].name.split(".")[0] for a in second.alerts] == ["web-new"]
