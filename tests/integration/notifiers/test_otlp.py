"""The otlp receiver against a loopback server that answers the way an OTLP/HTTP collector
(or a proxy or vendor endpoint before one) does: partial success, 4xx with a google.rpc.Status,
429/503 with Retry-After. The real collector's tests are tests/e2e/test_otlp_collector.py."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.delivery import DeliveryStage
from kube_event_watcher.notifiers.otlp import ATTR_NOTIFICATION_ID, OtlpConfig, OtlpNotifier
from tests.factories import numbered_alert
from tests.integration.notifiers.conftest import ContractServer
from tests.notifiers_support import FakeTime, until

TOKEN = "otlp-token-5a7c9e1b3d"


def answering(contract: ContractServer, *answers: tuple[int, object, dict[str, str]]) -> None:
    """Answer each request with the next (status, JSON body, headers); the last repeats."""
    queue = list(answers)

    async def handler(request: web.Request, body: bytes) -> web.Response:
        status, payload, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.Response(
            status=status,
            body=orjson.dumps(payload),
            headers=headers,
            content_type="application/json",
        )

    contract.handler = handler


def notifier(contract: ContractServer, **keys: object) -> OtlpNotifier:
    return OtlpNotifier(
        OtlpConfig(name="otel", type="otlp", endpoint=contract.url("/"), **keys)  # type: ignore[arg-type]
    )


async def test_a_batch_is_one_export_request_with_a_resource_per_cluster(
    contract_server: ContractServer,
) -> None:
    answering(contract_server, (200, {"partialSuccess": {}}, {}))
    otel = notifier(contract_server, bearer_token=TOKEN, headers={"X-Tenant": "team-a"})
    alerts = [numbered_alert(0), numbered_alert(1, cluster="eu"), numbered_alert(2)]
    assert await otel.send_many(alerts) == Delivered("HTTP 200")
    await otel.close()
    ((method, path, headers, body),) = contract_server.requests
    assert (method, path) == ("POST", "/v1/logs")
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-Tenant"] == "team-a"
    assert headers["Content-Encoding"] == "gzip"  # the server has un-gzipped `body` already
    assert headers["Content-Type"] == "application/json"
    resources = orjson.loads(body)["resourceLogs"]
    clusters = [
        next(
            a["value"]["stringValue"]
            for a in r["resource"]["attributes"]
            if a["key"] == "k8s.cluster.name"
        )
        for r in resources
    ]
    assert clusters == ["prod", "eu"]
    sent = [
        next(
            a["value"]["stringValue"] for a in rec["attributes"] if a["key"] == ATTR_NOTIFICATION_ID
        )
        for r in resources
        for rec in r["scopeLogs"][0]["logRecords"]
    ]
    assert sent == [alerts[0].notification_id, alerts[2].notification_id, alerts[1].notification_id]


async def test_partial_success_is_a_permanent_failure_naming_the_collectors_reason(
    contract_server: ContractServer,
) -> None:
    answering(
        contract_server,
        (
            200,
            {"partialSuccess": {"rejectedLogRecords": "1", "errorMessage": "attribute too long"}},
            {},
        ),
    )
    otel = notifier(contract_server)
    result = await otel.send(numbered_alert(1))
    await otel.close()
    assert result == PermanentFailure("the collector rejected 1 log record(s): attribute too long")


async def test_a_warning_without_rejected_records_is_delivered(
    contract_server: ContractServer,
) -> None:
    answering(contract_server, (200, {"partialSuccess": {"errorMessage": "slow down soon"}}, {}))
    otel = notifier(contract_server, compression="none")
    assert await otel.send(numbered_alert(1)) == Delivered("HTTP 200 (warning: slow down soon)")
    await otel.close()
    assert "Content-Encoding" not in contract_server.requests[0][2]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "HTTP 400: ReadLogs: invalid JSON — the collector could not decode the request"),
        (404, "HTTP 404: ReadLogs: invalid JSON — no OTLP logs endpoint at"),
        (500, "HTTP 500: ReadLogs: invalid JSON"),  # not retryable per the OTLP spec
    ],
)
async def test_other_errors_are_permanent_with_the_status_message(
    contract_server: ContractServer, status: int, expected: str
) -> None:
    answering(contract_server, (status, {"code": 3, "message": "ReadLogs: invalid JSON"}, {}))
    otel = notifier(contract_server)
    result = await otel.send(numbered_alert(1))
    await otel.close()
    assert isinstance(result, PermanentFailure)
    assert result.reason.startswith(expected)


async def test_retry_after_is_honoured_by_the_delivery_lane(
    contract_server: ContractServer, tmp_path: Path
) -> None:
    answering(
        contract_server,
        (503, {"code": 14, "message": "memory limiter"}, {"Retry-After": "7"}),
        (429, {"code": 8, "message": "too many"}, {"Retry-After": "3"}),
        (200, {}, {}),
    )
    otel = notifier(contract_server)
    assert await otel.send(numbered_alert(1)) == RetryAfter("HTTP 503: memory limiter", 7.0)
    time = FakeTime()
    stage = DeliveryStage([otel], tmp_path, clock=time.clock, sleep=time.sleep, fsync=False)
    await stage.start()
    alert = numbered_alert(2)
    await stage.submit("otel", alert)
    await until(lambda: stage.lanes["otel"].sent == 1, "delivered")
    await stage.stop(1.0)
    assert 3.0 in time.slept, "the lane waited as long as the collector asked"
    assert stage.lanes["otel"].retried == 1
    ids = [
        orjson.loads(r[3])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        for r in contract_server.requests[1:]
    ]
    assert len({str(i["attributes"]) for i in ids}) == 1, "a retry carries the same record"


async def test_the_token_stays_out_of_a_rejections_reason(
    contract_server: ContractServer,
) -> None:
    async def echo(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=401, text=f"bad credentials: {request.headers['Authorization']}")

    contract_server.handler = echo
    otel = notifier(contract_server, bearer_token=TOKEN)
    result = await otel.send(numbered_alert(1))
    await otel.close()
    assert isinstance(result, PermanentFailure)
    assert "check bearer_token" in result.reason
    assert TOKEN not in result.reason
    assert TOKEN not in (otel.last_answer or "")


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValidationError, match=r"endpoint\n.*OTLP/HTTP URL"):
        OtlpConfig(name="otel", type="otlp", endpoint="otel-collector:4317")
    with pytest.raises(ValidationError, match="either bearer_token or an Authorization header"):
        OtlpConfig(
            name="otel",
            type="otlp",
            endpoint="http://otel:4318",
            bearer_token=TOKEN,  # type: ignore[arg-type]
            headers={"authorization": "Basic eDp5"},  # type: ignore[dict-item]
        )
    assert (
        OtlpNotifier(OtlpConfig(name="otel", type="otlp", endpoint="https://otel:4318/v1/logs")).url
        == "https://otel:4318/v1/logs"
    )
