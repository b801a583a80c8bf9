"""WeCom group robot (企业微信群机器人): markdown messages with a byte limit.

Contract (https://developer.work.weixin.qq.com/document/path/91770): POST
.../cgi-bin/webhook/send?key=KEY; `markdown.content` at most 4096 bytes (UTF-8), with
`<font color="info|comment|warning">` and `<@userid>`; `markdown_v2` has tables but no
colours and no mentions. Errors in an HTTP 200 body as `errcode`. 20 messages a minute.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator
from yarl import URL

from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.notifiers.base import (
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.chat import ChatNotifier, ChatWebhookConfig, ensure_line
from kube_event_watcher.pipeline.model import Alert

MAX_CONTENT_BYTES = 4096

ERRCODE_BUSY = -1
BUSY_MAX_RETRIES = 3
ERRCODE_RATE = 45009
ERRCODE_TOO_LARGE = 45002
ERRCODE_BAD_TYPE = 40008
ERRCODE_EMPTY = 44004
ERRCODE_BAD_KEY = 93000

_EXPLANATIONS = {
    ERRCODE_BUSY: "WeCom is busy (-1); the alert is retried up to 3 times.",
    ERRCODE_RATE: (
        "Over WeCom's limit of 20 messages a minute for this robot (45009); the alert waits "
        "for the next minute."
    ),
    ERRCODE_TOO_LARGE: (
        "The message is larger than WeCom accepts (45002): markdown content is limited to "
        "4096 bytes; lower `max_bytes` or shorten the template."
    ),
    ERRCODE_BAD_TYPE: "WeCom does not accept this message type (40008): check `msgtype`.",
    ERRCODE_EMPTY: "WeCom got an empty message (44004): the template rendered nothing.",
    ERRCODE_BAD_KEY: (
        "WeCom does not know this webhook key (93000): the robot was removed or the URL is "
        "mistyped; copy the webhook URL from the robot's settings again."
    ),
}


class WeComConfig(ChatWebhookConfig):
    """`url` is the robot's webhook (…/cgi-bin/webhook/send?key=…)."""

    msgtype: Literal["markdown", "markdown_v2"] = "markdown"
    mention_users: list[str] = Field(default_factory=list, description="userids, or 'all'")
    mention_on_resolved: bool = False
    max_bytes: int = Field(default=MAX_CONTENT_BYTES, ge=512, le=MAX_CONTENT_BYTES)

    @model_validator(mode="after")
    def _has_key(self) -> Self:
        if "key" not in URL(self.url.get_secret_value()).query:
            raise ValueError(
                "url: expected the robot's webhook URL, "
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… (copy it from the "
                "robot's settings in the group chat)"
            )
        if self.mention_users and self.msgtype == "markdown_v2":
            raise ValueError("mention_users: WeCom's markdown_v2 cannot mention; use markdown")
        return self


def explain_wecom(status: int, body: object) -> str | None:
    if status >= 500:
        return "WeCom's server failed; the alert is retried."
    if isinstance(body, dict):
        errcode = body.get("errcode")
        if isinstance(errcode, int):
            return _EXPLANATIONS.get(errcode)
    return None


def severity_color(alert: Alert) -> str:
    """WeCom's three colours: green when resolved, orange for Warning, grey otherwise."""
    if alert.status == "resolved":
        return "info"
    return "warning" if alert.type == "Warning" else "comment"


class WeComNotifier(ChatNotifier):
    config_model: ClassVar[type[ReceiverConfig]] = WeComConfig
    config: WeComConfig
    platform = "wecom"
    template_platform = "wecom"
    dialect = "im-markdown"
    default_language = "zh-CN"
    platform_title = "WeCom"
    errcode_keys = ("errcode",)
    # 20 messages a minute per robot.
    default_rate_limit = RateLimitConfig(per_minute=20)

    def message(self, alert: Alert) -> dict[str, object]:
        firing = alert.status == "firing"
        users = self.config.mention_users if firing or self.config.mention_on_resolved else []
        mentions = " ".join(f"<@{user}>" for user in users)
        rendered = self.renderer.render(
            alert,
            color=severity_color(alert),
            markdown_v2=self.config.msgtype == "markdown_v2",
            mentions=mentions,
        )
        header = rendered.header
        header = ensure_line(header, mentions)
        content = self.renderer.cut(header, rendered.body, self.config.max_bytes, "bytes")
        msgtype = self.config.msgtype
        return {"msgtype": msgtype, msgtype: {"content": content}}

    def retry_on(self, code: object, what: str) -> RetryAfter | None:
        if code == ERRCODE_BUSY:
            # Worth a few retries only (NOTIFIERS.md: -1 at most 3 times).
            return RetryAfter(what, max_retries=BUSY_MAX_RETRIES)
        if code == ERRCODE_RATE:
            # The budget is per calendar minute: wait until the next one starts.
            now = self.clock.now()
            return RetryAfter(what, max(1.0, math.floor(now / 60 + 1) * 60 - now))
        return None

    def explain(self, status: int, body: object) -> str | None:
        return explain_wecom(status, body)
