"""Slack, Teams and Telegram against doubles that check their contracts and answer with their
own errors (real HTTP codes, Retry-After, Telegram's ok:false with retry_after)."""

from __future__ import annotations

import time
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web

from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.slack import SlackNotifier
from kube_event_watcher.notifiers.teams import CARD_CONTENT_TYPE, TeamsNotifier
from kube_event_watcher.notifiers.telegram import TelegramNotifier
from kube_event_watcher.notifiers.templating import TELEGRAM_TAGS
from tests.integration.notifiers.conftest import SERVER, Launch

Script = list[tuple[int, Any, dict[str, str]]]


def scripted_app(path: str, check: Callable[[Any], web.Response], script: Script | None = None):  # type: ignore[no-untyped-def]
    received: list[Any] = []
    pending = list(script or [])

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        received.append({"body": body, "size": len(await request.read())})
        if pending:
            status, answer, headers = pending.pop(0)
            if isinstance(answer, str):
                return web.Response(status=status, text=answer, headers=headers)
            return web.json_response(answer, status=status, headers=headers)
        return check(body)

    app = web.Application()
    app.router.add_post(path, handle)
    return app, received


# --- Slack --------------------------------------------------------------------------------


def slack_check(body: Any) -> web.Response:
    blocks = body.get("blocks", [])
    if not body.get("text") or len(blocks) > 50:
        return web.Response(status=400, text="invalid_blocks")
    for block in blocks:
        text = block.get("text", {}).get("text", "")
        if block["type"] == "section" and len(text) > 3000:
            return web.Response(status=400, text="invalid_blocks")
        if block["type"] == "header" and len(text) > 150:
            return web.Response(status=400, text="invalid_blocks")
    return web.Response(status=200, text="ok")


async def slack(launch: Launch, script: Script | None = None, **config: Any):  # type: ignore[no-untyped-def]
    app, received = scripted_app("/services/T000/B000/XXXX", slack_check, script)
    url = f"{SERVER}/services/T000/B000/XXXX"
    return await launch(SlackNotifier, app, name="s", type="slack", url=url, **config), received


async def test_slack_blocks_stay_within_limits(launch: Launch) -> None:
    notifier, received = await slack(launch, mention="<!here>")
    alert = sample_alert(time.time(), note="<b>x</b> & " * 1000)
    assert await notifier.send(alert) == Delivered()
    blocks = received[0]["body"]["blocks"]
    assert blocks[0]["type"] == "header"
    assert "<!here>" in blocks[1]["text"]["text"]
    body_text = blocks[-1]["text"]["text"]
    assert len(body_text) <= 3000
    assert "truncated" in body_text
    assert "<b>" not in body_text


@pytest.mark.parametrize(
    ("status", "answer", "headers", "expected"),
    [
        (429, "rate_limited", {"Retry-After": "7"}, RetryAfter),
        (500, "internal_error", {}, RetryAfter),
        (400, "invalid_payload", {}, PermanentFailure),
        (403, "action_prohibited", {}, PermanentFailure),
        (404, "no_service", {}, PermanentFailure),
        (410, "channel_is_archived", {}, PermanentFailure),
    ],
)
async def test_slack_http_codes(
    launch: Launch,
    status: int,
    answer: str,
    headers: dict[str, str],
    expected: type,
) -> None:
    notifier, _ = await slack(launch, script=[(status, answer, headers)])
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, expected)
    if status == 429:
        assert isinstance(result, RetryAfter)
        assert result.seconds == 7.0
    if isinstance(result, PermanentFailure):
        assert answer in result.reason
    assert notifier.explain(status, answer)


# --- Teams --------------------------------------------------------------------------------


def teams_check(body: Any) -> web.Response:
    attachments = body.get("attachments")
    if body.get("type") != "message" or not isinstance(attachments, list) or not attachments:
        return web.json_response({"error": {"code": "InvalidRequestContent"}}, status=400)
    card = attachments[0]
    if card.get("contentType") != CARD_CONTENT_TYPE:
        return web.json_response({"error": {"code": "InvalidRequestContent"}}, status=400)
    content = card["content"]
    if content.get("type") != "AdaptiveCard" or content.get("version") != "1.4":
        return web.json_response({"error": {"code": "InvalidRequestContent"}}, status=400)
    return web.Response(status=202)


async def test_teams_card_is_accepted_and_cut_under_28_kb(launch: Launch) -> None:
    app, received = scripted_app("/workflows/run", teams_check)

    async def size_guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if len(await request.read()) > 28 * 1024:
            return web.Response(status=413, text="Request Entity Too Large")
        return await handler(request)  # type: ignore[no-any-return]

    app.middlewares.append(web.middleware(size_guard))
    url = f"{SERVER}/workflows/run?api-version=1&sig=abcdefghijklmnopqrstuvwxyz"
    notifier = await launch(TeamsNotifier, app, name="t", type="teams", url=url)
    alert = sample_alert(time.time(), facts={"log_tail": 'line "quoted" ✓\n' * 5000})
    assert await notifier.send(alert) == Delivered()
    assert received[0]["size"] <= 28 * 1024
    text = received[0]["body"]["attachments"][0]["content"]["body"][1]["text"]
    assert "**Cluster:** sample-cluster" in text
    assert "truncated" in text


@pytest.mark.parametrize(
    ("status", "expected"), [(429, RetryAfter), (503, RetryAfter), (404, PermanentFailure)]
)
async def test_teams_errors(launch: Launch, status: int, expected: type) -> None:
    app, _ = scripted_app("/wf", teams_check, [(status, {"error": {"code": "x"}}, {})])
    notifier = await launch(TeamsNotifier, app, name="t", type="teams", url=f"{SERVER}/wf")
    assert isinstance(await notifier.send(sample_alert(time.time())), expected)


# --- Telegram -----------------------------------------------------------------------------

TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"


class _Entities(HTMLParser):
    """Telegram's HTML parser, as strict as the real one about tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.bad = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.bad |= tag not in TELEGRAM_TAGS
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.bad |= not self.stack or self.stack.pop() != tag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def telegram_check(body: Any) -> web.Response:
    text = body.get("text", "")
    if body.get("parse_mode") == "HTML":
        parser = _Entities()
        parser.feed(text)
        parser.close()
        if parser.bad or parser.stack:
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: can't parse entities: unexpected end tag",
                },
                status=400,
            )
        text = "".join(parser.text)
    if len(text) > 4096:
        return web.json_response(
            {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
            status=400,
        )
    return web.json_response({"ok": True, "result": {"message_id": 1}})


async def telegram(launch: Launch, script: Script | None = None, **config: Any):  # type: ignore[no-untyped-def]
    app, received = scripted_app(f"/bot{TOKEN}/sendMessage", telegram_check, script)
    settings = {"name": "tg", "type": "telegram", "token": TOKEN, "chat_id": -100123, **config}
    return await launch(TelegramNotifier, app, api_url=SERVER, **settings), received


async def test_telegram_html_message_fits_4096(launch: Launch) -> None:
    notifier, received = await telegram(launch)
    alert = sample_alert(time.time(), note="<b>not bold</b> & more " * 400)
    assert await notifier.send(alert) == Delivered()
    body = received[0]["body"]
    assert body["parse_mode"] == "HTML"
    assert len(body["text"]) <= 4096
    assert "&lt;b&gt;not bold" in body["text"]


async def test_telegram_parse_error_is_resent_once_as_plain_text(launch: Launch) -> None:
    notifier, received = await telegram(launch, template="<b>{{ reason }} <i>unclosed</b>")
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, Delivered)
    assert "plain text" in result.detail
    assert len(received) == 2
    assert "parse_mode" not in received[1]["body"]
    assert received[1]["body"]["text"] == "BackOff unclosed"


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 12",
                "parameters": {"retry_after": 12},
            },
            RetryAfter,
        ),
        (
            403,
            {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"},
            PermanentFailure,
        ),
        (
            400,
            {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
            PermanentFailure,
        ),
        (502, "Bad Gateway", RetryAfter),
    ],
)
async def test_telegram_errors(launch: Launch, status: int, answer: Any, expected: type) -> None:
    notifier, _ = await telegram(launch, script=[(status, answer, {})])
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, expected)
    if status == 429:
        assert isinstance(result, RetryAfter)
        assert result.seconds == 12.0
    assert TOKEN not in str(result)
    assert notifier.explain(status, answer)
