"""The generic webhook against a loopback server that verifies Standard Webhooks signatures
with the `standardwebhooks` package (an independent implementation)."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kube_event_watcher.config.loading import load_config
from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.delivery import DeliveryStage
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.notifiers.testnotify import run_test_notify
from kube_event_watcher.notifiers.webhook import WebhookConfig, WebhookNotifier
from tests.factories import numbered_alert
from tests.integration.notifiers.conftest import ContractServer
from tests.notifiers_support import FakeTime, until

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


def verifying(contract: ContractServer, status: int = 200) -> None:
    async def handler(request: web.Request, body: bytes) -> web.Response:
        try:
            Webhook(SECRET).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return web.Response(status=401, text=f"bad signature: {exc}")
        return web.Response(status=status, text="accepted")

    contract.handler = handler


def notifier(contract: ContractServer, path: str = "/hook") -> WebhookNotifier:
    config = WebhookConfig(name="hook", type="webhook", url=contract.url(path), secret=SECRET)
    return WebhookNotifier(config)


async def test_signed_payload_is_verified_independently(contract_server: ContractServer) -> None:
    verifying(contract_server)
    hook = notifier(contract_server)
    await hook.start()
    alert = numbered_alert(1)
    result = await hook.send(alert)
    await hook.close()
    assert result == Delivered("HTTP 200")
    _, path, headers, body = contract_server.requests[0]
    assert path == "/hook"
    assert headers["webhook-id"] == alert.notification_id
    doc = orjson.loads(body)
    assert doc["type"] == "kube_event.alert.firing"
    assert doc["data"]["reason"] == "BackOff"
    assert doc["data"]["regarding"]["name"] == "api-1"


async def test_a_batch_is_one_signed_request_with_every_record(
    contract_server: ContractServer,
) -> None:
    verifying(contract_server)
    config = WebhookConfig(
        name="hook", type="webhook", url=contract_server.url(), secret=SECRET, batch_size=10
    )
    hook = WebhookNotifier(config)
    alerts = [numbered_alert(i) for i in range(3)]
    assert await hook.send_many(alerts) == Delivered("HTTP 200")
    assert await hook.send(numbered_alert(9)) == Delivered("HTTP 200")
    await hook.close()
    (_, _, headers, body), (_, _, _, single) = contract_server.requests
    doc = orjson.loads(body)
    assert doc["type"] == "kube_event.alerts"
    assert [r["id"] for r in doc["data"]] == [a.notification_id for a in alerts]
    assert [r["regarding"]["name"] for r in doc["data"]] == ["api-0", "api-1", "api-2"]
    assert headers["webhook-id"].startswith("batch-")
    assert hook.request_many(alerts).headers["webhook-id"] == headers["webhook-id"], (
        "the same alerts make the same batch id (a retry is recognisable)"
    )
    # With batch_size above 1, a lone alert comes in the same shape.
    assert [r["id"] for r in orjson.loads(single)["data"]] == [numbered_alert(9).notification_id]


async def test_a_wrong_secret_fails_verification(contract_server: ContractServer) -> None:
    verifying(contract_server)
    other = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    config = WebhookConfig(name="hook", type="webhook", url=contract_server.url(), secret=other)
    hook = WebhookNotifier(config)
    result = await hook.send(numbered_alert(1))
    await hook.close()
    assert isinstance(result, PermanentFailure)
    assert "401" in result.reason


@pytest.mark.parametrize(
    ("status", "headers", "expected", "seconds"),
    [
        (204, {}, Delivered, None),
        (301, {"Location": "/elsewhere"}, PermanentFailure, None),
        (400, {}, PermanentFailure, None),
        (410, {}, PermanentFailure, None),
        (429, {"Retry-After": "7"}, RetryAfter, 7.0),
        (502, {}, RetryAfter, None),
        (504, {"Retry-After": "3"}, RetryAfter, 3.0),
        (500, {}, RetryAfter, None),
    ],
)
async def test_answers_map_to_outcomes(
    contract_server: ContractServer,
    status: int,
    headers: dict[str, str],
    expected: type,
    seconds: float | None,
) -> None:
    async def handler(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=status, headers=headers, text="nope" if status >= 300 else "")

    contract_server.handler = handler
    hook = notifier(contract_server)
    result = await hook.send(numbered_alert(1))
    await hook.close()
    assert isinstance(result, expected)
    if isinstance(result, RetryAfter):
        assert result.seconds == seconds
    # A redirect is never followed: the signed payload goes only where it was configured.
    assert [r[1] for r in contract_server.requests] == ["/hook"]


async def test_webhook_id_is_the_same_on_every_retry(
    contract_server: ContractServer, tmp_path: Path
) -> None:
    answers = [503, 429, 200]

    async def handler(request: web.Request, body: bytes) -> web.Response:
        Webhook(SECRET).verify(body, dict(request.headers))
        return web.Response(status=answers.pop(0), headers={"Retry-After": "1"})

    contract_server.handler = handler
    time = FakeTime()
    stage = DeliveryStage(
        [notifier(contract_server)], tmp_path, clock=time.clock, sleep=time.sleep, fsync=False
    )
    await stage.start()
    alert = numbered_alert(5)
    await stage.submit("hook", alert)
    await until(lambda: stage.lanes["hook"].sent == 1, "delivered")
    await stage.stop(1.0)
    seen = [r[2]["webhook-id"] for r in contract_server.requests]
    assert seen == [alert.notification_id] * 3
    assert stage.lanes["hook"].retried == 2


async def test_test_notify_prints_the_answer_and_explains_it(
    contract_server: ContractServer, tmp_path: Path
) -> None:
    async def handler(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=410, text='{"error":"endpoint disabled"}')

    contract_server.handler = handler
    config = tmp_path / "config.yaml"
    config.write_text(
        "receivers:\n"
        "  - name: hook\n"
        "    type: webhook\n"
        f"    url: {contract_server.url('/hook')}\n"
        f"    secret: {SECRET}\n"
    )
    loaded = load_config(str(config), config_models())
    out = io.StringIO()
    code = await run_test_notify(loaded, "hook", out)
    text = out.getvalue()
    assert code == 1
    assert "result: PermanentFailure" in text
    assert 'HTTP 410\n{"error":"endpoint disabled"}' in text
    assert "what it means: the endpoint is gone (410)" in text
    assert SECRET not in text

    # Each run is a notification of its own: the receiver must not drop a re-run as a repeat.
    assert await run_test_notify(loaded, "hook", io.StringIO()) == 1
    first, second = (r[2]["webhook-id"] for r in contract_server.requests)
    assert first != second

    missing = io.StringIO()
    assert await run_test_notify(loaded, "nope", missing) == 2
    assert "no receiver named 'nope'" in missing.getvalue()
