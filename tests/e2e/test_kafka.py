"""The kafka receiver against a real Apache Kafka 4.4 broker (KRaft, one node): what lands
on the topic, broker outages, a daemon killed mid-publish, and what a broker refuses."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kube_event_watcher.notifiers.base import Delivered, PermanentFailure
from kube_event_watcher.notifiers.kafka import KafkaConfig, KafkaNotifier
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.stream import SCHEMA_FILE
from tests.conftest import RunningDouble
from tests.support.process import eventually, start_daemon, stop_daemon

from .engines.kafka.broker import KafkaBroker


async def create_topic(broker: KafkaBroker, name: str, **config: str) -> str:
    """A topic of 3 partitions; retried while the broker is still finding its feet."""
    deadline = time.monotonic() + 30
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            await admin.start()
            await admin.create_topics([NewTopic(name, 3, 1, topic_configs=config)])
            return name
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def read_topic(broker: KafkaBroker, topic: str) -> list[Any]:
    """Every record on the topic, as a consumer reading it from the beginning sees it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        async with asyncio.timeout(20):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(messages)
        return out
    finally:
        await consumer.stop()


def ids(records: list[Any]) -> Counter[str]:
    return Counter(dict(r.headers)["kew-notification-id"].decode() for r in records)


async def until_topic(
    broker: KafkaBroker, topic: str, enough: Any, what: str, log: Path
) -> list[Any]:
    """Poll the topic until `enough(records)`, at most 60 s."""
    deadline = time.monotonic() + 60
    while True:
        found = await read_topic(broker, topic)
        if enough(found):
            return found
        if time.monotonic() > deadline:
            text = log.read_text()[-3000:] if log.exists() else ""
            raise AssertionError(
                f"timed out waiting for {what} ({len(found)} records); log:\n{text}"
            )
        await asyncio.sleep(0.2)


def daemon_config(tmp_path: Path, broker: KafkaBroker, topic: str, **aggregation: Any) -> Path:
    config = {
        "receivers": [
            {
                "name": "stream",
                "type": "kafka",
                "bootstrap_servers": [broker.bootstrap],
                "topic": topic,
                "timeout": "3s",
                "delivery": {"retry_initial": "200ms", "retry_max": "1s", "breaker_cooldown": "1s"},
            }
        ],
        "aggregation": aggregation or {"enabled": False},
        "enrichment": {"enabled": False},
        "state": {"backend": "file", "path": str(tmp_path / "state"), "commit_interval": "100ms"},
        "ops": {"listen": "127.0.0.1:0"},
        "log": {"format": "json"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_alerts_land_valid_keyed_with_headers_and_a_groups_firing_then_resolve_in_order(
    up: KafkaBroker, api_double: RunningDouble, tmp_path: Path
) -> None:
    topic = await create_topic(up, "alerts-shape")
    config = daemon_config(
        tmp_path,
        up,
        topic,
        group={"wait": "1s", "interval": "5s", "resolve_after": "2s"},
        dedup={"window": "2s"},
    )
    proc = await start_daemon(config, api_double.kubeconfig)
    try:
        await api_double.api.wait_watches(1, timeout=30)
        for namespace in ("payments", "shop", "search"):
            await api_double.api.create_event(namespace, "BackOff", f"{namespace}-api-7d4b9c-x1")
        found = await until_topic(
            up,
            topic,
            lambda rs: sum(json.loads(r.value)["status"] == "resolved" for r in rs) >= 3,
            "three groups firing then resolved",
            tmp_path / "daemon.log",
        )
    finally:
        await stop_daemon(proc)
    schema = json.loads(files("kube_event_watcher").joinpath(SCHEMA_FILE).read_text())
    by_key: dict[str, list[tuple[int, int, str]]] = {}
    for record in found:
        body = json.loads(record.value)
        jsonschema.validate(body, schema)
        headers = {k: v.decode() for k, v in record.headers}
        assert record.key.decode() == body["key"]
        assert headers["kew-schema"] == body["schema"] == "kube-event-watcher/alert/v1"
        assert headers["kew-notification-id"] == body["id"]
        assert headers["kew-status"] == body["status"]
        assert headers["kew-cluster"] == body["cluster"]
        by_key.setdefault(body["key"], []).append((record.partition, record.offset, body["status"]))
    assert len(by_key) == 3
    for messages in by_key.values():
        assert len({partition for partition, _, _ in messages}) == 1, "one group, one partition"
        assert [status for _, _, status in sorted(messages)] == ["firing", "resolved"]
    assert max(ids(found).values()) == 1


async def test_a_broker_down_at_start_and_mid_run_loses_nothing_and_repeats_nothing(
    up: KafkaBroker, api_double: RunningDouble, tmp_path: Path
) -> None:
    topic = await create_topic(up, "alerts-outage")
    log = tmp_path / "daemon.log"
    up.stop()
    proc = await start_daemon(daemon_config(tmp_path, up, topic), api_double.kubeconfig)
    try:
        api = api_double.api
        await api.wait_watches(1, timeout=30)
        for i in range(3):
            await api.create_event("default", "BackOff", f"web-{i}")
        await eventually(lambda: "receiver asked to retry" in log.read_text(), "a retry", log, proc)
        up.start()
        await until_topic(up, topic, lambda rs: len(rs) >= 3, "the first three", log)
        retries = log.read_text().count("receiver asked to retry")
        up.stop()
        for i in range(3, 6):
            await api.create_event("default", "BackOff", f"web-{i}")
        await eventually(
            lambda: log.read_text().count("receiver asked to retry") > retries,
            "a retry while the broker is down",
            log,
            proc,
        )
        up.start()
        found = await until_topic(up, topic, lambda rs: len(ids(rs)) >= 6, "all six", log)
    finally:
        if up.proc is None:
            up.start()
        await stop_daemon(proc)
    assert len(ids(found)) == 6 and max(ids(found).values()) == 1
    assert len(found) == 6


async def test_a_daemon_killed_mid_publish_leaves_each_notification_on_the_topic_once(
    up: KafkaBroker, api_double: RunningDouble, tmp_path: Path
) -> None:
    topic = await create_topic(up, "alerts-kill")
    log = tmp_path / "daemon.log"
    config = daemon_config(tmp_path, up, topic)
    count = 300
    proc = await start_daemon(config, api_double.kubeconfig)
    api = api_double.api
    await api.wait_watches(1, timeout=30)

    async def flow() -> None:  # events keep coming while the daemon is killed and back
        for i in range(count):
            await api.create_event(f"ns-{i % 7}", "BackOff", f"web-{i}")
            await asyncio.sleep(0.005)

    events = asyncio.create_task(flow())
    try:
        await until_topic(up, topic, lambda rs: len(rs) >= 30, "some records", log)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at = len(await read_topic(up, topic))
        proc = await start_daemon(config, api_double.kubeconfig)
        await eventually(
            lambda: '"resuming from checkpoint"' in log.read_text(), "the restart", log, proc
        )
        await events
        await until_topic(up, topic, lambda rs: len(ids(rs)) >= count, "all of them", log)
    finally:
        events.cancel()
        await stop_daemon(proc)
    found = await read_topic(up, topic)
    seen = ids(found)
    assert len(seen) == count, f"missing: {count - len(seen)} (killed at {killed_at} records)"
    assert [i for i, n in seen.items() if n > 1] == []
    assert len(found) == count


async def test_a_restarted_receiver_answers_what_already_landed_without_producing_it_again(
    up: KafkaBroker, tmp_path: Path
) -> None:
    """The crash window itself, exactly: the broker took the records, the spool never
    heard; a new process re-sends them with the same ids."""
    topic = await create_topic(up, "alerts-resend")
    config = KafkaConfig(name="stream", type="kafka", bootstrap_servers=[up.bootstrap], topic=topic)
    now = time.time()
    alerts = [
        replace(sample_alert(now), key=f"group-{i}", notification_id=f"n-{i:03d}") for i in range(8)
    ]
    first = KafkaNotifier(config)
    first.state_dir = tmp_path
    await first.start()
    assert isinstance(await first.send_many(alerts[:5]), Delivered)
    await first.close()  # as if killed: nothing told the spool

    second = KafkaNotifier(config)
    second.state_dir = tmp_path
    await second.start()
    try:
        assert isinstance(await second.send_many(alerts[:3]), Delivered)
        assert isinstance(await second.send_many(alerts[3:]), Delivered)
    finally:
        await second.close()
    found = await read_topic(up, topic)
    assert sorted(ids(found).elements()) == [f"n-{i:03d}" for i in range(8)]


async def test_a_missing_topic_and_a_too_large_record_are_permanent_with_their_reason(
    up: KafkaBroker, tmp_path: Path
) -> None:
    missing = KafkaNotifier(
        KafkaConfig(name="s", type="kafka", bootstrap_servers=[up.bootstrap], topic="no-such-topic")
    )
    missing.state_dir = tmp_path
    await missing.start()
    try:
        result = await missing.send(sample_alert(time.time()))
    finally:
        await missing.close()
    assert isinstance(result, PermanentFailure)
    assert "'no-such-topic' does not exist" in result.reason
    assert "auto.create.topics.enable" in result.reason

    topic = await create_topic(up, "alerts-small", **{"max.message.bytes": "2048"})
    small = KafkaNotifier(
        KafkaConfig(name="s", type="kafka", bootstrap_servers=[up.bootstrap], topic=topic)
    )
    small.state_dir = tmp_path
    await small.start()
    try:
        big = sample_alert(time.time(), note="x" * 4000)
        result = await small.send(big)
        ok = await small.send(sample_alert(time.time()))
    finally:
        await small.close()
    assert isinstance(result, PermanentFailure)
    assert "larger than" in result.reason and "max.message.bytes" in result.reason
    assert isinstance(ok, Delivered)
    assert len(await read_topic(up, topic)) == 1
