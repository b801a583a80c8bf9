"""Slack with a bot token: chat.postMessage, and with `edit_in_place` chat.update of the
incident's message, against a double of the Web API that keeps the channel's messages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.slack import SlackConfig, SlackNotifier
from tests.integration.notifiers.test_global_chat_contracts import slack_check
from tests.integration.notifiers.test_telegram_edit import (
    deliver_an_incident_with_a_restart,
    incident,
)
from tests.notifiers_support import serve_app

TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
CHANNEL_ID = "C0ALERTS01"


class Workspace:
    """One channel (#alerts, ID C0ALERTS01) the bot is in; messages by ts."""

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.script: list[web.Response] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/chat.postMessage", self.post)
        app.router.add_post("/api/chat.update", self.update)
        return app

    @staticmethod
    def ok(**fields: Any) -> web.Response:
        return web.json_response({"ok": True, **fields})

    @staticmethod
    def error(code: str) -> web.Response:
        return web.json_response({"ok": False, "error": code})  # HTTP 200, as Slack answers

    async def checked(self, request: web.Request, method: str) -> dict[str, Any] | web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.error("invalid_auth")
        body: dict[str, Any] = await request.json()
        self.calls.append((method, body))
        if self.script:
            return self.script.pop(0)
        if slack_check(body).status != 200:
            return self.error("invalid_blocks")
        return body

    async def post(self, request: web.Request) -> web.Response:
        body = await self.checked(request, "post")
        if isinstance(body, web.Response):
            return body
        if body.get("channel") not in ("#alerts", CHANNEL_ID):
            return self.error("channel_not_found")
        ts = f"1700000000.{len(self.messages) + 1:06d}"
        self.messages[ts] = body
        return self.ok(channel=CHANNEL_ID, ts=ts, message={"text": body["text"]})

    async def update(self, request: web.Request) -> web.Response:
        body = await self.checked(request, "update")
        if isinstance(body, web.Response):
            return body
        if body.get("channel") != CHANNEL_ID:  # chat.update takes the ID, not #name
            return self.error("channel_not_found")
        if body.get("ts") not in self.messages:
            return self.error("message_not_found")
        self.messages[body["ts"]] = body
        return self.ok(channel=CHANNEL_ID, ts=body["ts"])


def bot(server: TestServer, **config: Any) -> SlackNotifier:
    settings = {
        "name": "slack",
        "type": "slack",
        "token": TOKEN,
        "channel": "#alerts",
        "api_url": str(server.make_url("/api")),
        "edit_in_place": True,
        **config,
    }
    return SlackNotifier(SlackConfig(**settings))


async def test_an_incident_is_one_slack_message_updated_through_a_restart(
    tmp_path: Path,
) -> None:
    workspace = Workspace()
    server = await serve_app(workspace.app())
    try:
        await deliver_an_incident_with_a_restart(
            lambda: bot(server, send_resolved=True), tmp_path, time.time()
        )
    finally:
        await server.close()
    assert [method for method, _ in workspace.calls] == ["post", "update", "update"]
    [message] = workspace.messages.values()
    assert "resolved" in message["text"].lower()


async def test_a_deleted_slack_message_is_posted_again(tmp_path: Path) -> None:
    workspace = Workspace()
    server = await serve_app(workspace.app())
    first, grown, _ = incident(time.time())
    slack = bot(server)
    slack.state_dir = tmp_path
    try:
        await slack.start()
        assert await slack.send(first) == Delivered()
        workspace.messages.clear()
        assert await slack.send(grown) == Delivered()
    finally:
        await slack.close()
        await server.close()
    assert [method for method, _ in workspace.calls] == ["post", "update", "post"]


@pytest.mark.parametrize(
    ("answer", "expected", "hint"),
    [
        (Workspace.error("not_in_channel"), PermanentFailure, "/invite"),
        (Workspace.error("missing_scope"), PermanentFailure, "chat:write"),
        (Workspace.error("internal_error"), RetryAfter, ""),
        (web.Response(status=429, headers={"Retry-After": "7"}), RetryAfter, ""),
    ],
)
async def test_web_api_errors_are_judged_by_their_error_code(
    tmp_path: Path, answer: web.Response, expected: type, hint: str
) -> None:
    workspace = Workspace()
    workspace.script.append(answer)
    server = await serve_app(workspace.app())
    slack = bot(server, edit_in_place=False)
    try:
        await slack.start()
        result = await slack.send(sample_alert(time.time()))
    finally:
        await slack.close()
        await server.close()
    assert isinstance(result, expected)
    assert hint in str(result)
    assert TOKEN not in str(result)
    if answer.status == 429:
        assert isinstance(result, RetryAfter)
        assert result.seconds == 7.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "give either url (an incoming webhook) or token and channel"),
        (
            {"url": "https://hooks.slack.com/services/T/B/X", "token": TOKEN, "channel": "#a"},
            "not both or neither",
        ),
        ({"token": TOKEN}, "channel: needed with token"),
        (
            {"url": "https://hooks.slack.com/services/T/B/X", "edit_in_place": True},
            "an incoming webhook cannot change what it sent",
        ),
    ],
)
def test_the_config_says_which_way_in_is_wrong(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        SlackConfig(name="slack", type="slack", **settings)
    assert message in str(raised.value)
    assert TOKEN not in str(raised.value)


async def test_without_edit_in_place_each_notification_is_a_new_post(tmp_path: Path) -> None:
    workspace = Workspace()
    server = await serve_app(workspace.app())
    slack = bot(server, edit_in_place=False)
    try:
        await slack.start()
        for alert in incident(time.time()):
            assert await slack.send(alert) == Delivered()
    finally:
        await slack.close()
        await server.close()
    assert [method for method, _ in workspace.calls] == ["post", "post", "post"]
