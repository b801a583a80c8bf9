"""DingTalk against a double that checks what DingTalk checks: token, timestamp, signature
(recomputed here independently from the raw query), keyword, shape; errors as errcode in 200."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web
from pydantic import ValidationError

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.loading import load_config
from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.dingtalk import DingTalkConfig, DingTalkNotifier
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.testnotify import run_test_notify
from tests.integration.notifiers.conftest import SERVER, Launch, Serve

TOKEN = "t0ken-abcdef0123456789"
SECRET = "SECa1b2c3d4e5f6+/=tricky&chars"
KEYWORD = "k8s告警"


def dingtalk_double(
    script: list[dict[str, Any]] | None = None,
) -> tuple[web.Application, list[Any]]:
    received: list[Any] = []
    scripted = list(script or [])

    async def robot_send(request: web.Request) -> web.Response:
        # Parse the raw query exactly once, as DingTalk does: a double-encoded sign fails.
        raw = dict(part.split("=", 1) for part in request.query_string.split("&") if part)
        body = await request.json()
        received.append({"query": raw, "body": body})
        if scripted:
            return web.json_response(scripted.pop(0))
        if raw.get("access_token") != TOKEN:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        timestamp = int(raw.get("timestamp", "0"))
        if abs(time.time() * 1000 - timestamp) > 3600 * 1000:
            return web.json_response({"errcode": 310000, "errmsg": "invalid timestamp"})
        expected = base64.b64encode(
            hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        if unquote(raw.get("sign", "")) != expected:
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        markdown = body.get("markdown", {})
        if (
            body.get("msgtype") != "markdown"
            or not markdown.get("title")
            or not markdown.get("text")
        ):
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 json"})
        if KEYWORD not in markdown["text"]:
            return web.json_response(
                {"errcode": 310000, "errmsg": "关键词不匹配 keywords not in content"}
            )
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    app = web.Application()
    app.router.add_post("/robot/send", robot_send)
    return app, received


Make = Callable[..., Awaitable[DingTalkNotifier]]


@pytest.fixture
def make(launch: Launch) -> Make:
    """`await make(app, clock=None, **settings)`: a started DingTalk notifier for `app`."""
    url = f"{SERVER}/robot/send?access_token={TOKEN}"
    settings = {
        "name": "oncall",
        "type": "dingtalk",
        "url": url,
        "secret": SECRET,
        "keyword": KEYWORD,
    }
    return partial(launch, DingTalkNotifier, **settings)


async def test_signed_message_is_accepted_and_says_what_happened(make: Make) -> None:
    app, received = dingtalk_double()
    notifier = await make(app, at_mobiles=["13800000000"])
    result = await notifier.send(sample_alert(time.time()))
    assert result == Delivered()
    body = received[0]["body"]
    assert KEYWORD in body["markdown"]["title"]
    assert "集群" in body["markdown"]["text"]  # zh-CN is DingTalk's default
    assert "@13800000000" in body["markdown"]["text"]
    assert body["at"] == {"atMobiles": ["13800000000"], "atUserIds": [], "isAtAll": False}
    assert "%25" not in received[0]["query"]["sign"]  # encoded exactly once


async def test_every_attempt_is_signed_afresh(make: Make) -> None:
    app, received = dingtalk_double()
    clock = FakeClock(time.time())
    notifier = await make(app, clock=clock)
    assert await notifier.send(sample_alert(clock.now())) == Delivered()
    clock.advance(61)
    assert await notifier.send(sample_alert(clock.now())) == Delivered()
    stamps = [r["query"]["timestamp"] for r in received]
    assert stamps[0] != stamps[1]


async def test_wrong_secret_is_permanent_and_explained(make: Make) -> None:
    app, _ = dingtalk_double()
    notifier = await make(app, secret="SECwrong-secret-value")
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, PermanentFailure)
    assert "310000" in result.reason
    assert "signature" in result.reason
    assert "SECwrong" not in result.reason


async def test_a_clock_off_by_two_hours_is_refused_with_the_reason(make: Make) -> None:
    app, _ = dingtalk_double()
    notifier = await make(app, clock=FakeClock(time.time() - 7200))
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, PermanentFailure)
    assert "clock" in result.reason


async def test_without_the_keyword_dingtalk_refuses(make: Make) -> None:
    app, _ = dingtalk_double()
    notifier = await make(app, keyword=None)
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, PermanentFailure)
    assert "keyword" in result.reason


async def test_keyword_survives_truncation(make: Make) -> None:
    app, received = dingtalk_double()
    notifier = await make(app, max_bytes=2000)
    alert = sample_alert(time.time(), note="日志" * 5000)
    assert await notifier.send(alert) == Delivered()
    text = received[0]["body"]["markdown"]["text"]
    assert len(text.encode()) <= 2000
    assert "已截断" in text


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"errcode": 130101, "errmsg": "send too fast"}, RetryAfter),
        ({"errcode": -1, "errmsg": "system busy"}, RetryAfter),
        ({"errcode": 300001, "errmsg": "token is not exist"}, PermanentFailure),
    ],
)
async def test_platform_errors_map_to_outcomes(
    make: Make, answer: dict[str, Any], expected: type
) -> None:
    app, _ = dingtalk_double(script=[answer])
    notifier = await make(app)
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, expected)
    if answer["errcode"] == 130101:
        assert isinstance(result, RetryAfter)
        assert result.seconds == 60.0
    assert notifier.explain(200, answer)


async def test_server_errors_and_unreachable_are_retried(make: Make, serve: Serve) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    app = web.Application()
    app.router.add_post("/robot/send", broken)
    notifier = await make(app)
    assert isinstance(await notifier.send(sample_alert(time.time())), RetryAfter)

    dead = DingTalkNotifier(
        DingTalkConfig(
            name="x", type="dingtalk", url=f"http://127.0.0.1:9/robot/send?access_token={TOKEN}"
        )
    )
    await dead.start()
    try:
        result = await dead.send(sample_alert(time.time()))
    finally:
        await dead.close()
    assert isinstance(result, RetryAfter)
    assert TOKEN not in result.reason


def test_config_errors_are_clear_and_never_echo_the_secret() -> None:
    with pytest.raises(ValidationError, match="access_token"):
        DingTalkConfig(name="x", type="dingtalk", url="https://oapi.dingtalk.com/robot/send")
    with pytest.raises(ValidationError) as info:
        DingTalkConfig(name="x", type="dingtalk", url="ftp://secret-token-value-123456")
    messages = [error["msg"] for error in info.value.errors()]  # what check-config shows
    assert any("expected an http(s):// URL" in m for m in messages)
    assert not any("secret-token-value-123456" in m for m in messages)


async def test_test_notify_prints_dingtalks_answer_verbatim_and_explains_310000(
    serve: Serve, tmp_path: Path
) -> None:
    app, received = dingtalk_double()
    server = await serve(app)
    url = server.make_url(f"/robot/send?access_token={TOKEN}")
    config = tmp_path / "config.yaml"
    # No keyword configured: the robot refuses the message with 310000.
    config.write_text(
        f"receivers:\n  - name: oncall\n    type: dingtalk\n    url: '{url}'\n"
        f"    secret: '{SECRET}'\n"
    )
    loaded = load_config(str(config), config_models())
    out = io.StringIO()
    assert await run_test_notify(loaded, "oncall", out) == 1
    text = out.getvalue()
    assert "result: PermanentFailure" in text
    wire = json.dumps({"errcode": 310000, "errmsg": "关键词不匹配 keywords not in content"})
    assert f"platform answered:\nHTTP 200\n{wire}\n" in text  # byte for byte what it sent
    assert "what it means: DingTalk's security settings refused the message (310000)" in text
    assert "set `keyword:`" in text
    assert TOKEN not in text and SECRET not in text
    # A second run is a new notification (its own id), not a repeat of the first.
    assert await run_test_notify(loaded, "oncall", io.StringIO()) == 1
    assert len(received) == 2
