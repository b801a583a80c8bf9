"""Feishu with an app (app_id, app_secret, chat_id): the Open API's tenant_access_token and
im/v1/messages, and with `edit_in_place` the incident's card updated (PATCH), against a
double of the Open API that keeps the chat's messages and checks what Feishu checks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError
from structlog.testing import capture_logs

from kube_event_watcher.config.secrets import redact
from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.feishu import FeishuConfig, FeishuNotifier
from kube_event_watcher.notifiers.sample import sample_alert
from tests.integration.notifiers.test_telegram_edit import (
    deliver_an_incident_with_a_restart,
    incident,
)
from tests.notifiers_support import serve_app

APP_ID = "cli_a1b2c3d4e5f60718"
APP_SECRET = "Qx7sT2vLp9WmN4rZk8HdYc3JfB6uEa1G"
CHAT_ID = "oc_5ad11d72b830411d72b836c20"


class OpenApi:
    """One group chat the app's bot is in; tokens it handed out; messages by message_id."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.recalled: set[str] = set()
        self.calls: list[str] = []
        self.script: list[web.Response] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self.token)
        app.router.add_post("/open-apis/im/v1/messages", self.create)
        app.router.add_patch("/open-apis/im/v1/messages/{message_id}", self.update)
        return app

    @staticmethod
    def error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    async def token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append("token")
        if body != {"app_id": APP_ID, "app_secret": APP_SECRET}:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        token = f"t-g1044ghJRUIJJ5ELMTS3{len(self.tokens):04d}ZKXNBAZGDO7YQBK"
        self.tokens.append(token)
        return web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}
        )

    async def checked(self, request: web.Request, call: str) -> dict[str, Any] | web.Response:
        self.calls.append(call)
        if request.headers.get("Authorization") != f"Bearer {self.tokens[-1:] and self.tokens[-1]}":
            return self.error(99991663, "Invalid access token for authorization.")
        if self.script:
            return self.script.pop(0)
        body: dict[str, Any] = await request.json()
        card = orjson.loads(body["content"])  # a JSON string, not an object
        if card.get("config", {}).get("update_multi") is not True:
            return self.error(230001, "card must be a shared card (update_multi) to update")
        return body

    async def create(self, request: web.Request) -> web.Response:
        body = await self.checked(request, "create")
        if isinstance(body, web.Response):
            return body
        if request.query.get("receive_id_type") != "chat_id" or body["receive_id"] != CHAT_ID:
            return self.error(230002, "The bot can not be outside the group.")
        assert body["msg_type"] == "interactive"
        message_id = f"om_dc13264520392913993dd051dba2{len(self.messages):04d}"
        self.messages[message_id] = orjson.loads(body["content"])
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": message_id}})

    async def update(self, request: web.Request) -> web.Response:
        body = await self.checked(request, "update")
        if isinstance(body, web.Response):
            return body
        message_id = request.match_info["message_id"]
        if message_id in self.recalled:
            return self.error(230011, "The message is recalled.")
        self.messages[message_id] = orjson.loads(body["content"])
        return web.json_response({"code": 0, "msg": "success", "data": {}})


def app_notifier(url: str, **config: Any) -> FeishuNotifier:
    settings = {
        "name": "feishu",
        "type": "feishu",
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "chat_id": CHAT_ID,
        "api_url": f"{url}/open-apis",
        "edit_in_place": True,
        **config,
    }
    return FeishuNotifier(FeishuConfig(**settings))


def card_title(card: dict[str, Any]) -> str:
    return str(card["header"]["title"]["content"])


async def test_an_incident_is_one_card_updated_through_a_restart(tmp_path: Path) -> None:
    api = OpenApi()
    server = await serve_app(api.app())
    url = str(server.make_url("")).rstrip("/")
    try:
        await deliver_an_incident_with_a_restart(
            lambda: app_notifier(url, send_resolved=True), tmp_path, time.time()
        )
    finally:
        await server.close()
    # One token per process, one card, updated twice.
    assert api.calls == ["token", "create", "token", "update", "update"]
    [card] = api.messages.values()
    assert card["header"]["template"] == "green"  # the resolve's colour
    assert "9" in orjson.dumps(card).decode()  # the grown group's Pod count


async def test_a_recalled_card_is_sent_again_and_an_expired_token_renewed(
    tmp_path: Path,
) -> None:
    api = OpenApi()
    server = await serve_app(api.app())
    first, grown, _ = incident(time.time())
    feishu = app_notifier(str(server.make_url("")).rstrip("/"))
    feishu.state_dir = tmp_path
    try:
        await feishu.start()
        assert await feishu.send(first) == Delivered()
        api.recalled.update(api.messages)
        assert await feishu.send(grown) == Delivered()
        assert api.calls == ["token", "create", "update", "create"]
        api.tokens.append("t-issued-to-someone-else")  # ours is no longer the valid one
        answer = await feishu.send(grown)
        assert isinstance(answer, RetryAfter)
        assert "99991663" in answer.reason
        renewed = await feishu.send(grown)  # a new token, then the update
        assert renewed == Delivered(
            f"updated message {next(iter(api.messages.keys() - api.recalled))}"
        )
    finally:
        await feishu.close()
        await server.close()
    assert api.calls[-3:] == ["update", "token", "update"]
    assert len(api.messages) == 2


@pytest.mark.parametrize(
    ("answer", "expected", "hint"),
    [
        (
            OpenApi.error(230002, "The bot can not be outside the group."),
            PermanentFailure,
            "add the bot",
        ),
        (
            OpenApi.error(230027, "Lack of necessary permissions."),
            PermanentFailure,
            "im:message:send_as_bot",
        ),
        (OpenApi.error(230020, "This operation triggers the frequency limit."), RetryAfter, ""),
        (web.Response(status=503), RetryAfter, ""),
    ],
)
async def test_open_api_errors_are_judged_by_their_code(
    answer: web.Response, expected: type, hint: str
) -> None:
    api = OpenApi()
    api.script.append(answer)
    server = await serve_app(api.app())
    feishu = app_notifier(str(server.make_url("")).rstrip("/"), edit_in_place=False)
    try:
        await feishu.start()
        result = await feishu.send(sample_alert(time.time()))
    finally:
        await feishu.close()
        await server.close()
    assert isinstance(result, expected)
    assert hint in str(result)
    assert APP_SECRET not in str(result)


async def test_a_wrong_app_secret_is_reported_with_its_fix_and_never_shown() -> None:
    api = OpenApi()
    server = await serve_app(api.app())
    wrong = "Zz9sT2vLp9WmN4rZk8HdYc3JfB6uEa1G"
    feishu = app_notifier(str(server.make_url("")).rstrip("/"), app_secret=wrong)
    try:
        with capture_logs() as logs:
            result = await feishu.send(sample_alert(time.time()))
    finally:
        await feishu.close()
        await server.close()
    assert isinstance(result, PermanentFailure)
    assert "tenant_access_token" in result.reason
    assert "app_secret" in result.reason  # the 10014 hint
    assert wrong not in result.reason + str(logs)


async def test_the_tenant_token_is_masked_in_the_answer_test_notify_shows() -> None:
    api = OpenApi()
    server = await serve_app(api.app())
    feishu = app_notifier(str(server.make_url("")).rstrip("/"), edit_in_place=False)
    try:
        assert await feishu.send(sample_alert(time.time())) == Delivered()
    finally:
        await feishu.close()
        await server.close()
    [token] = api.tokens
    assert token not in redact(f"error with {token} inside")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "give either url (a custom bot) or app_id, app_secret and chat_id"),
        ({"app_id": APP_ID, "app_secret": APP_SECRET}, "chat_id: needed with an app"),
        (
            {"url": "https://open.feishu.cn/open-apis/bot/v2/hook/x", "app_id": APP_ID},
            "not both",
        ),
        (
            {"url": "https://open.feishu.cn/open-apis/bot/v2/hook/x", "edit_in_place": True},
            "a custom bot cannot change what it sent",
        ),
        (
            {"app_id": APP_ID, "app_secret": APP_SECRET, "chat_id": CHAT_ID, "secret": "s3cr3t-x"},
            "an app has none",
        ),
    ],
)
def test_the_config_says_which_way_in_is_wrong(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        FeishuConfig(name="feishu", type="feishu", **settings)
    assert message in str(raised.value)
    assert APP_SECRET not in str(raised.value)
