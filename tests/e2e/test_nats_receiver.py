"""The `nats` receiver against a real nats-server with JetStream (built from the Go module
proxy by tests/e2e/engines/nats/build.sh): what lands in the stream, outages of the server,
a kill -9 of the daemon, refusals, and secrets kept out of the logs. Exactly once is counted
the way a consumer counts: every message of the stream, by its notification id."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from structlog.testing import capture_logs

from kube_event_watcher.config.secrets import registry
from kube_event_watcher.notifiers.base import Delivered, DeliveryResult, RetryAfter
from kube_event_watcher.notifiers.delivery import DeliveryStage
from kube_event_watcher.notifiers.nats import NatsConfig, NatsNotifier
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.stream import (
    ALERT_SCHEMA,
    HEADER_CLUSTER,
    HEADER_NOTIFICATION_ID,
    HEADER_SCHEMA,
    HEADER_STATUS,
)
from kube_event_watcher.pipeline.model import Alert
from tests.conftest import RunningDouble
from tests.e2e.engines.nats.server import (
    NatsServer,
    StoredMessage,
    read_stream,
    stream_count,
)
from tests.factories import make_alert, numbered_alert
from tests.notifiers_support import until
from tests.support.process import eventually, start_daemon, stop_daemon
from tests.unit.notifiers.test_stream_schema import shipped_schema

WRITER_PASSWORD = "writer-pass-5f0c2a9e"
READER_PASSWORD = "reader-pass-81d7b3c4"
WRONG_TOKEN = "wrong-token-3e9a71c2d8"
# Users of the permissions server: `reader` may not publish to kew.denied.>.
AUTH_CONFIG = f"""
authorization {{
  users = [
    {{user: writer, password: "{WRITER_PASSWORD}"}}
    {{user: reader, password: "{READER_PASSWORD}",
      permissions: {{publish: {{deny: ["kew.denied.>"]}}}}}}
  ]
}}
"""
_streams = itertools.count(1)


@pytest.fixture(scope="module")
def auth_server(
    nats_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatsServer]:
    with NatsServer(nats_binary, tmp_path_factory.mktemp("nats-auth"), AUTH_CONFIG) as server:
        yield server


def stream_name() -> str:
    return f"KEW{next(_streams)}"


def receiver(server: NatsServer, stream: str, **keys: Any) -> dict[str, Any]:
    return {
        "name": "bus",
        "type": "nats",
        "servers": [server.url],
        "subject": f"kew.{stream.lower()}.{{cluster}}.{{namespace}}",
        "stream": stream,
        "create_stream": {"duplicate_window": "10m"},
        **keys,
    }


@pytest.fixture
async def notifier_for() -> AsyncIterator[Any]:
    """Started NatsNotifiers from receiver configs, closed after the test."""
    started: list[NatsNotifier] = []

    async def make(config: dict[str, Any]) -> NatsNotifier:
        notifier = NatsNotifier(NatsConfig.model_validate(config))
        await notifier.start()
        started.append(notifier)
        return notifier

    yield make
    for notifier in started:
        await notifier.close()


async def send_when_connected(notifier: NatsNotifier, alerts: Sequence[Alert]) -> DeliveryResult:
    """The first answer that is not "not connected yet" (the client connects in the
    background), within 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        result = await notifier.send_many(alerts)
        if not (isinstance(result, RetryAfter) and "not connected" in result.reason):
            return result
        assert loop.time() < deadline, result.reason
        await asyncio.sleep(0.02)


async def stored(server: NatsServer, stream: str, count: int, **auth: str) -> list[StoredMessage]:
    """The stream's messages once it holds at least `count` (polled for up to 60 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    held: list[StoredMessage] = []
    while loop.time() < deadline:
        try:
            held = await read_stream(server.url, stream, **auth)
        except Exception:  # not up yet, no stream yet
            held = []
        if len(held) >= count:
            return held
        await asyncio.sleep(0.1)
    raise AssertionError(f"the stream {stream} holds {len(held)} messages, not {count}")


async def until_count(server: NatsServer, stream: str, count: int) -> None:
    """Until the stream holds `count` messages (a cheap poll, every 10 ms, for up to 30 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await stream_count(server.url, stream) < count:
        assert loop.time() < deadline, f"the stream {stream} never held {count} messages"
        await asyncio.sleep(0.01)


def counted(messages: list[StoredMessage]) -> Counter[str]:
    """How often each notification id is in the stream, as a consumer counts."""
    return Counter(headers[HEADER_NOTIFICATION_ID] for _, headers, _ in messages)


# -- in process: the notifier itself --------------------------------------------------------


async def test_alerts_land_in_the_stream_valid_with_headers_and_a_resend_is_dropped(
    running: NatsServer, notifier_for: Any
) -> None:
    stream = stream_name()
    notifier = await notifier_for(receiver(running, stream))
    alerts = [
        *(numbered_alert(i) for i in range(5)),
        make_alert("Node", "node-1", reason="NodeNotReady"),
        sample_alert(1_700_000_000.0),
    ]
    first = await send_when_connected(notifier, alerts)
    assert isinstance(first, Delivered), first
    # The spool's replay after a kill -9 sends the same notifications again: stored once.
    again = await notifier.send_many(alerts)
    assert isinstance(again, Delivered) and f"({len(alerts)} duplicate)" in again.detail

    messages = await read_stream(running.url, stream)
    assert len(messages) == len(alerts)
    schema = shipped_schema()
    for alert, (subject, headers, body) in zip(alerts, messages, strict=True):
        record = orjson.loads(body)
        jsonschema.validate(record, schema)
        assert record["id"] == alert.notification_id
        assert headers == {
            HEADER_SCHEMA: ALERT_SCHEMA,
            HEADER_NOTIFICATION_ID: alert.notification_id,
            HEADER_STATUS: alert.status,
            HEADER_CLUSTER: alert.cluster,
            "Nats-Msg-Id": alert.notification_id,
            "Nats-Expected-Stream": stream,
        }
        assert subject == f"kew.{stream.lower()}.{alert.cluster}.{alert.namespace or '_'}"


async def test_a_missing_stream_and_an_unbound_subject_are_refused_with_the_reason(
    running: NatsServer, notifier_for: Any
) -> None:
    missing = await notifier_for(receiver(running, "NOSUCH", create_stream=None))
    result = await send_when_connected(missing, [numbered_alert(1)])
    assert not isinstance(result, Delivered | RetryAfter)
    assert "stream 'NOSUCH' does not exist" in result.reason
    assert "create_stream" in result.reason

    stream = stream_name()
    await send_when_connected(await notifier_for(receiver(running, stream)), [numbered_alert(1)])
    elsewhere = await notifier_for(
        receiver(running, stream, subject="kew.unbound.{cluster}", create_stream=None)
    )
    result = await send_when_connected(elsewhere, [numbered_alert(2)])
    assert not isinstance(result, Delivered | RetryAfter)
    assert "no JetStream stream takes the subject 'kew.unbound.*'" in result.reason


async def test_a_user_without_publish_rights_is_reported_once_with_the_reason(
    auth_server: NatsServer, tmp_path: Path, notifier_for: Any
) -> None:
    stream = stream_name()
    owner = {"user": "writer", "password": WRITER_PASSWORD}
    setup = await notifier_for(
        receiver(auth_server, stream, subject="kew.denied.{cluster}", **owner)
    )
    assert isinstance(await send_when_connected(setup, [numbered_alert(0)]), Delivered)

    config = NatsConfig.model_validate(
        receiver(
            auth_server,
            stream,
            subject="kew.denied.{cluster}",
            user="reader",
            password=READER_PASSWORD,
        )
    )
    stage = DeliveryStage([NatsNotifier(config)], tmp_path / "spool")
    lane = stage.lanes["bus"]
    with capture_logs() as logs:
        await stage.start()
        try:
            await stage.submit("bus", numbered_alert(1))
            await until(lambda: lane.failed == 1, "the refusal", timeout=20)
        finally:
            await stage.stop()
    dropped = [e for e in logs if e["event"] == "receiver rejected the alert; dropped"]
    assert len(dropped) == 1 and lane.sent == 0
    assert 'permissions violation for publish to "kew.denied.prod"' in dropped[0]["reason"]
    assert "give the NATS user publish rights on 'kew.denied.*'" in dropped[0]["reason"]
    assert len(await read_stream(auth_server.url, stream, **owner)) == 1


# -- the daemon as a process ----------------------------------------------------------------


def daemon_config(tmp_path: Path, receivers: list[dict[str, Any]], level: str = "info") -> Path:
    fast = {"retry_initial": "100ms", "retry_max": "500ms", "breaker_cooldown": "1s"}
    config = {
        "receivers": [{**r, "delivery": fast} for r in receivers],
        "state": {"backend": "file", "path": str(tmp_path / "state"), "commit_interval": "100ms"},
        "log": {"format": "json", "level": level},
        "ops": {"listen": "127.0.0.1:0"},
        "aggregation": {"enabled": False},
        "enrichment": {"enabled": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def event_uids(messages: list[StoredMessage]) -> list[str]:
    return [orjson.loads(body)["event"]["uid"] for _, _, body in messages]


async def test_server_down_at_start_and_mid_run_loses_nothing_and_keeps_its_store(
    api_double: RunningDouble, running: NatsServer, tmp_path: Path
) -> None:
    api, stream = api_double.api, stream_name()
    config = daemon_config(tmp_path, [receiver(running, stream)])
    log = tmp_path / "daemon.log"
    running.stop()
    proc = await start_daemon(config, api_double.kubeconfig)
    await api.wait_watches(1, timeout=30)
    events = [await api.create_event("default", "BackOff", f"early-{i}") for i in range(5)]
    await eventually(lambda: "not connected to NATS" in log.read_text(), "a retry", log, proc)
    running.start()
    await stored(running, stream, 5)

    running.stop()  # mid-run; the store stays on disk
    events += [await api.create_event("default", "BackOff", f"late-{i}") for i in range(5)]
    mark = len(log.read_text())
    await eventually(lambda: "receiver asked to retry" in log.read_text()[mark:], "a retry", log)
    running.start()
    messages = await stored(running, stream, 10)
    await stop_daemon(proc, timeout=20)

    assert sorted(event_uids(messages)) == sorted(e["metadata"]["uid"] for e in events)
    assert set(counted(messages).values()) == {1}


async def test_a_kill_9_mid_publish_then_a_restart_stores_each_notification_once(
    api_double: RunningDouble, running: NatsServer, tmp_path: Path
) -> None:
    api, stream, total = api_double.api, stream_name(), 150
    config = daemon_config(tmp_path, [receiver(running, stream)])
    proc = await start_daemon(config, api_double.kubeconfig)
    await api.wait_watches(1, timeout=30)

    async def burst() -> list[dict[str, Any]]:
        created = []
        for i in range(total):  # paced over ~1.5 s, so that the kill lands among them
            created.append(await api.create_event("default", "OOMKilling", f"p-{i}"))
            await asyncio.sleep(0.01)
        return created

    creating = asyncio.create_task(burst())
    await until_count(running, stream, 10)
    proc.kill()  # while it publishes: some stored, their spool acks maybe not written
    await proc.wait()
    killed_at = await stream_count(running.url, stream)
    events = await creating
    proc = await start_daemon(config, api_double.kubeconfig)
    events.append(await api.create_event("default", "Marker", "m"))
    messages = await stored(running, stream, total + 1)
    await stop_daemon(proc, timeout=20)

    assert sorted(event_uids(messages)) == sorted(e["metadata"]["uid"] for e in events)
    assert len(messages) == total + 1 and set(counted(messages).values()) == {1}
    assert killed_at < total, "killed mid-run: the restarted daemon sent the rest"


async def test_passwords_and_tokens_stay_out_of_logs_and_check_config(
    api_double: RunningDouble, auth_server: NatsServer, tmp_path: Path
) -> None:
    stream = stream_name()
    (tmp_path / "password").write_text(WRITER_PASSWORD + "\n")
    writer = receiver(auth_server, stream, user="writer", password_file=str(tmp_path / "password"))
    # A token the server does not accept: the authorization errors are logged, never it.
    refused = {**receiver(auth_server, stream_name(), token=WRONG_TOKEN), "name": "refused"}
    config = daemon_config(tmp_path, [writer, refused], level="debug")
    both = [
        {"match": {}, "receiver": "bus", "continue": True},
        {"match": {}, "receiver": "refused"},
    ]
    routes = {"receiver": "bus", "routes": both}
    loaded = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**loaded, "routes": routes}))

    checking = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kube_event_watcher.cli", "check-config", "-c", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = (part.decode() for part in await checking.communicate())
    assert checking.returncode == 0, err
    assert "writer" in out and "****" in out

    proc = await start_daemon(config, api_double.kubeconfig)
    await api_double.api.wait_watches(1, timeout=30)
    event = await api_double.api.create_event("default", "BackOff", "web")
    messages = await stored(auth_server, stream, 1, user="writer", password=WRITER_PASSWORD)
    log = tmp_path / "daemon.log"
    await eventually(lambda: "Authorization Violation" in log.read_text(), "the refusal", log)
    await stop_daemon(proc, timeout=20)

    assert event_uids(messages) == [event["metadata"]["uid"]]
    for text in (out + err, log.read_text()):
        assert WRITER_PASSWORD not in text and WRONG_TOKEN not in text
    registry.clear()
