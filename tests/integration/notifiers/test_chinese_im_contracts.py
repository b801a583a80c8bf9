"""WeCom and Feishu against doubles that check what the platforms check and answer with
their own errors (HTTP 200 + errcode / code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest
from aiohttp import web

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.feishu import FeishuNotifier
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.wecom import WeComNotifier
from tests.integration.notifiers.conftest import SERVER, Launch

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
SECRET = "feishu-signing-secret-0123"


def wecom_double(script: list[dict[str, Any]] | None = None) -> tuple[web.Application, list[Any]]:
    received: list[Any] = []
    scripted = list(script or [])

    async def send(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body)
        if scripted:
            return web.json_response(scripted.pop(0))
        if request.query.get("key") != KEY:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        msgtype = body.get("msgtype")
        if msgtype not in ("markdown", "markdown_v2", "text"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        content = body.get(msgtype, {}).get("content", "")
        if not content:
            return web.json_response({"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode("utf-8")) > 4096:
            return web.json_response({"errcode": 45002, "errmsg": "content exceed max length"})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    app = web.Application()
    app.router.add_post("/cgi-bin/webhook/send", send)
    return app, received


async def wecom(launch: Launch, app: web.Application, **config: Any) -> Any:
    url = f"{SERVER}/cgi-bin/webhook/send?key={KEY}"
    return await launch(WeComNotifier, app, name="w", type="wecom", url=url, **config)


async def test_wecom_markdown_fits_4096_bytes_with_the_header_whole(launch: Launch) -> None:
    app, received = wecom_double()
    notifier = await wecom(launch, app, mention_users=["zhangsan"])
    alert = sample_alert(time.time(), note="容器反复重启，" * 600)
    assert await notifier.send(alert) == Delivered()
    content = received[0]["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert '<font color="warning">' in content
    assert "<@zhangsan>" in content
    assert "> **最近出现：**" in content  # the header's last line survived the cut
    assert "已截断" in content


async def test_wecom_markdown_v2_has_no_font_tags(launch: Launch) -> None:
    app, received = wecom_double()
    notifier = await wecom(launch, app, msgtype="markdown_v2", language="en")
    assert await notifier.send(sample_alert(time.time())) == Delivered()
    content = received[0]["markdown_v2"]["content"]
    assert "<font" not in content
    assert "```" in content  # the log tail as a code block
    assert "Cluster" in content


async def test_wecom_rate_limit_waits_for_the_next_minute(launch: Launch) -> None:
    app, _ = wecom_double(script=[{"errcode": 45009, "errmsg": "api freq out of limit"}])
    clock = FakeClock(1_800_000_050.0)  # 50 s into a minute
    notifier = await wecom(launch, app, clock=clock)
    result = await notifier.send(sample_alert(clock.now()))
    assert isinstance(result, RetryAfter)
    assert result.seconds == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"errcode": -1, "errmsg": "system busy"}, RetryAfter),
        ({"errcode": 45002, "errmsg": "content exceed max length"}, PermanentFailure),
        ({"errcode": 40008, "errmsg": "invalid message type"}, PermanentFailure),
        ({"errcode": 44004, "errmsg": "empty content"}, PermanentFailure),
        ({"errcode": 93000, "errmsg": "invalid webhook url"}, PermanentFailure),
    ],
)
async def test_wecom_errors(launch: Launch, answer: dict[str, Any], expected: type) -> None:
    app, _ = wecom_double(script=[answer])
    notifier = await wecom(launch, app)
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, expected)
    if answer["errcode"] == -1:  # busy: worth 3 retries at most (the lane gives up after)
        assert isinstance(result, RetryAfter)
        assert result.max_retries == 3
    assert notifier.explain(200, answer)


def feishu_double(
    script: list[dict[str, Any]] | None = None, keyword: str | None = None
) -> tuple[web.Application, list[Any]]:
    received: list[Any] = []
    scripted = list(script or [])

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        body = await request.json()
        received.append(body)
        if scripted:
            return web.json_response(scripted.pop(0))
        if len(raw) > 20 * 1024:
            return web.json_response({"code": 9499, "msg": "Bad Request", "data": {}})
        timestamp = int(body.get("timestamp", "0"))
        key = f"{timestamp}\n{SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        if abs(time.time() - timestamp) > 3600 or body.get("sign") != expected:
            return web.json_response(
                {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
            )
        card = body.get("card")
        if body.get("msg_type") != "interactive" or not isinstance(card, dict):
            return web.json_response({"code": 9499, "msg": "Bad Request", "data": {}})
        if keyword and keyword not in str(card):
            return web.json_response({"code": 19024, "msg": "Key Words Not Found"})
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    app = web.Application()
    app.router.add_post("/open-apis/bot/v2/hook/{hook_id}", hook)
    return app, received


async def feishu(launch: Launch, app: web.Application, **config: Any) -> Any:
    url = f"{SERVER}/open-apis/bot/v2/hook/0a1b2c3d-hook"
    settings = {"name": "f", "type": "feishu", "url": url, "secret": SECRET, **config}
    return await launch(FeishuNotifier, app, **settings)


async def test_feishu_signed_card_is_accepted(launch: Launch) -> None:
    app, received = feishu_double(keyword="告警")
    notifier = await feishu(launch, app, keyword="告警", mention_all=True)
    assert await notifier.send(sample_alert(time.time())) == Delivered()
    card = received[0]["card"]
    assert card["header"]["template"] == "red"
    assert "BackOff" in card["header"]["title"]["content"]
    assert "<at id=all></at>" in card["elements"][0]["content"]


async def test_feishu_large_alert_is_cut_under_20_kb(launch: Launch) -> None:
    app, received = feishu_double()
    notifier = await feishu(launch, app)
    alert = sample_alert(time.time(), facts={"log_tail": '错误"\\行\n' * 6000})
    assert await notifier.send(alert) == Delivered()
    content = received[0]["card"]["elements"][0]["content"]
    assert "**集群：** sample-cluster" in content
    assert "已截断" in content


async def test_feishu_wrong_secret_and_old_timestamp_are_permanent(launch: Launch) -> None:
    app, _ = feishu_double()
    notifier = await feishu(launch, app, secret="another-secret-xyz")
    result = await notifier.send(sample_alert(time.time()))
    assert isinstance(result, PermanentFailure)
    assert "19021" in result.reason
    app2, _ = feishu_double()
    stale = await feishu(launch, app2, clock=FakeClock(time.time() - 7200))
    assert isinstance(await stale.send(sample_alert(time.time())), PermanentFailure)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"code": 11232, "msg": "frequency limited"}, RetryAfter),
        ({"code": 19022, "msg": "Ip Not Allowed"}, PermanentFailure),
        ({"code": 19024, "msg": "Key Words Not Found"}, PermanentFailure),
        ({"code": 9499, "msg": "Bad Request"}, PermanentFailure),
        ({"StatusCode": 0, "StatusMessage": "success"}, Delivered),
    ],
)
async def test_feishu_errors(launch: Launch, answer: dict[str, Any], expected: type) -> None:
    app, _ = feishu_double(script=[answer])
    notifier = await feishu(launch, app)
    assert isinstance(await notifier.send(sample_alert(time.time())), expected)
    if expected is not Delivered:
        assert notifier.explain(200, answer)
