"""PagerDuty Events v2 against a loopback server that validates what /v2/enqueue validates."""

from __future__ import annotations

from dataclasses import replace

import orjson
from aiohttp import web

from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from tests.factories import numbered_alert
from tests.integration.notifiers.conftest import ContractServer

ROUTING_KEY = "R0123456789abcdef0123456789abcdef"


async def enqueue(request: web.Request, body: bytes) -> web.Response:
    """What PagerDuty checks (https://developer.pagerduty.com/api-reference/YXBpOjI3NDgyNjU-)."""
    errors = []
    event = orjson.loads(body)
    if request.path != "/v2/enqueue":
        return web.json_response({"status": "not found"}, status=404)
    if event.get("routing_key") != ROUTING_KEY:
        errors.append("'routing_key' is invalid")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid")
    dedup = event.get("dedup_key", "")
    if not dedup or len(dedup) > 255:
        errors.append("'dedup_key' is invalid")
    if action == "trigger":
        payload = event.get("payload") or {}
        if not payload.get("summary") or len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is missing or too long")
        if not payload.get("source"):
            errors.append("'payload.source' is missing")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            errors.append("'payload.severity' is invalid")
    if len(body) > 512 * 1024:
        errors.append("event too large")
    if errors:
        return web.json_response(
            {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
            status=400,
        )
    return web.json_response(
        {"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202
    )


def pagerduty(contract: ContractServer, routing_key: str = ROUTING_KEY) -> PagerDutyNotifier:
    config = PagerDutyConfig(
        name="pd", type="pagerduty", routing_key=routing_key, url=contract.url("/v2/enqueue")
    )
    return PagerDutyNotifier(config)


def sent_events(contract: ContractServer) -> list[dict[str, object]]:
    return [orjson.loads(body) for *_, body in contract.requests]


async def test_trigger_then_resolve_share_the_dedup_key(contract_server: ContractServer) -> None:
    contract_server.handler = enqueue
    pd = pagerduty(contract_server)
    firing = numbered_alert(1, note="x" * 5000)  # a long note: the summary is cut to 1024
    resolved = replace(firing, status="resolved")
    assert isinstance(await pd.send(firing), Delivered)
    assert isinstance(await pd.send(resolved), Delivered)
    await pd.close()
    trigger, resolve = sent_events(contract_server)
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == firing.key
    payload = trigger["payload"]
    assert isinstance(payload, dict)
    assert len(payload["summary"]) == 1024
    assert payload["summary"].endswith("…")
    assert payload["severity"] == "warning"
    assert payload["source"] == "prod"


async def test_invalid_key_is_permanent_and_explained(contract_server: ContractServer) -> None:
    contract_server.handler = enqueue
    pd = pagerduty(contract_server, routing_key="not-the-key")
    result = await pd.send(numbered_alert(1))
    await pd.close()
    assert isinstance(result, PermanentFailure)
    assert "routing_key" in result.reason
    assert pd.last_answer is not None
    assert pd.last_answer.startswith("HTTP 400")


async def test_throttled_is_retried_after_the_given_time(contract_server: ContractServer) -> None:
    async def throttled(request: web.Request, body: bytes) -> web.Response:
        return web.json_response({"status": "throttled"}, status=429, headers={"Retry-After": "9"})

    contract_server.handler = throttled
    pd = pagerduty(contract_server)
    result = await pd.send(numbered_alert(1))
    await pd.close()
    assert result == RetryAfter('HTTP 429: {"status": "throttled"}', 9.0)
