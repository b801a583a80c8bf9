"""Feishu / Lark custom bot (飞书自定义机器人): signed interactive cards.

Contract (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot): POST
.../open-apis/bot/v2/hook/{id} with `{"msg_type":"interactive","card":{…}}` (the card is an
object), and for signed bots top-level `timestamp` (epoch seconds, within 1 h) and
`sign` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")). Body ≤ 20 KB.
Errors in an HTTP 200 body as `code`. 100 messages a minute, 5 a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, ClassVar

import orjson
from pydantic import Field, SecretStr

from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.notifiers.base import (
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.chat import (
    ChatNotifier,
    ChatWebhookConfig,
    ensure_line,
    ensure_prefix,
)
from kube_event_watcher.pipeline.model import Alert

MAX_BODY_BYTES = 20 * 1024

CODE_RATE = 11232
CODE_BAD_REQUEST = 9499
CODE_SIGN = 19021
CODE_IP = 19022
CODE_KEYWORD = 19024

_EXPLANATIONS = {
    CODE_RATE: "Feishu's rate limit (11232): 100 messages a minute and 5 a second per bot; "
    "the alert is retried.",
    CODE_BAD_REQUEST: "Feishu refused the request (9499): the body is malformed or larger "
    "than 20 KB; lower `max_bytes` or shorten the template.",
    CODE_SIGN: "The signature check failed (19021): check `secret` (the bot's signing secret) "
    "and that this host's clock is within 1 hour of real time (check NTP).",
    CODE_IP: "This host's public IP is not in the bot's IP allow-list (19022).",
    CODE_KEYWORD: "The message lacks one of the bot's keywords (19024): set `keyword:`.",
}


class FeishuConfig(ChatWebhookConfig):
    """`url` is the bot's webhook (…/open-apis/bot/v2/hook/…); `secret` its signing secret."""

    secret: SecretStr | None = None
    keyword: str | None = Field(default=None, min_length=1)
    mention_all: bool = False
    mention_user_ids: list[str] = Field(default_factory=list, description="open_ids (ou_…)")
    mention_on_resolved: bool = False
    max_bytes: int = Field(default=MAX_BODY_BYTES, ge=2048, le=MAX_BODY_BYTES)


def feishu_sign(timestamp: int, secret: str) -> str:
    """Feishu signs an empty message with the key "{timestamp}\\n{secret}"."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def explain_feishu(status: int, body: object) -> str | None:
    if status >= 500:
        return "Feishu's server failed; the alert is retried."
    if isinstance(body, dict):
        code = body.get("code", body.get("StatusCode"))
        if isinstance(code, int):
            return _EXPLANATIONS.get(code)
    return None


def card_color(alert: Alert) -> str:
    if alert.status == "resolved":
        return "green"
    return "red" if alert.type == "Warning" else "grey"


class FeishuNotifier(ChatNotifier):
    config_model: ClassVar[type[ReceiverConfig]] = FeishuConfig
    config: FeishuConfig
    platform = "feishu"
    template_platform = "feishu"
    dialect = "im-markdown"
    default_language = "zh-CN"
    platform_title = "Feishu"
    # Newer bots answer {"code":0,"msg":"success"}; older ones {"StatusCode":0,...}.
    errcode_keys = ("code", "StatusCode")
    # 100 messages a minute and 5 a second per bot: a burst of 5 stays within the second.
    default_rate_limit = RateLimitConfig(per_minute=100, burst=5)

    def payload(self, alert: Alert) -> bytes:
        """The request body, signed now (every attempt gets a fresh timestamp)."""
        firing = alert.status == "firing"
        notify = firing or self.config.mention_on_resolved
        ids = [*(["all"] if self.config.mention_all else []), *self.config.mention_user_ids]
        mentions = " ".join(f"<at id={who}></at>" for who in ids) if notify else ""
        rendered = self.renderer.render(alert, mentions=mentions)
        title, header = rendered.title, rendered.header
        keyword = self.config.keyword
        header = ensure_line(ensure_line(header, mentions, "\n"), keyword or "", "\n")
        title = ensure_prefix(title, keyword)
        signature: dict[str, Any] = {}
        if self.config.secret is not None:
            timestamp = int(self.clock.now())
            signature = {
                "timestamp": str(timestamp),
                "sign": feishu_sign(timestamp, self.config.secret.get_secret_value()),
            }

        def encode(text: str) -> bytes:
            card = {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": title},
                    "template": card_color(alert),
                },
                "elements": [{"tag": "markdown", "content": text}],
            }
            return orjson.dumps({**signature, "msg_type": "interactive", "card": card})

        message = type(rendered)(title=title, header=header, body=rendered.body)
        return self.renderer.fit(message, self.config.max_bytes, encode)

    def retry_on(self, code: object, what: str) -> RetryAfter | None:
        return RetryAfter(what, 1.0) if code == CODE_RATE else None

    def explain(self, status: int, body: object) -> str | None:
        return explain_feishu(status, body)
