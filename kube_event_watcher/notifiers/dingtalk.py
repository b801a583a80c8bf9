"""DingTalk custom robot (钉钉自定义机器人): signed markdown messages.

Contract (https://open.dingtalk.com/document/robots/custom-robot-access):
POST ...?access_token=T&timestamp=TS&sign=S with TS in epoch milliseconds (within 1 h of
DingTalk's clock) and S = base64(HMAC-SHA256(key=secret, msg=f"{TS}\\n{secret}")), URL-encoded
once. Errors come back in an HTTP 200 body as `errcode`. 20 messages a minute per robot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import ClassVar, Self
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from yarl import URL

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
from kube_event_watcher.notifiers.templating import RenderedMessage
from kube_event_watcher.pipeline.model import Alert

# Not documented; ~20,000 bytes is what users report. Configurable as max_bytes.
DEFAULT_MAX_BYTES = 20_000

ERRCODE_TOO_FAST = 130101
ERRCODE_SECURITY = 310000
ERRCODE_TOKEN = 300001
ERRCODE_BUSY = -1


class DingTalkConfig(ChatWebhookConfig):
    """`url` is the robot's webhook (with ?access_token=…); `secret` its SEC… signing secret."""

    secret: SecretStr | None = None
    keyword: str | None = Field(default=None, min_length=1)
    at_mobiles: list[str] = Field(default_factory=list)
    at_user_ids: list[str] = Field(default_factory=list)
    at_all: bool = False
    mention_on_resolved: bool = False
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1000, le=DEFAULT_MAX_BYTES)

    @model_validator(mode="after")
    def _has_token(self) -> Self:
        if "access_token" not in URL(self.url.get_secret_value()).query:
            raise ValueError(
                "url: expected the robot's webhook URL, "
                "https://oapi.dingtalk.com/robot/send?access_token=… (copy it from the robot's "
                "settings in the group)"
            )
        return self


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """The `sign` query value before URL encoding."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_url(base: URL, timestamp_ms: int, secret: str) -> URL:
    """`base` plus timestamp and sign, encoded exactly once (aiohttp's `params=` would
    re-encode the `%` of an already encoded sign, and DingTalk would answer 310000)."""
    kept = [
        part
        for part in base.raw_query_string.split("&")
        if part and part.split("=", 1)[0] not in ("timestamp", "sign")
    ]
    sign = quote(dingtalk_sign(timestamp_ms, secret), safe="")
    query = "&".join([*kept, f"timestamp={timestamp_ms}", f"sign={sign}"])
    return URL(str(base.with_query(None)) + "?" + query, encoded=True)


def explain_dingtalk(status: int, body: object) -> str | None:
    if status >= 500:
        return "DingTalk's server failed; the alert is retried."
    if not isinstance(body, dict):
        return None
    errcode, errmsg = body.get("errcode"), str(body.get("errmsg", ""))
    lowered = errmsg.lower()
    if errcode == ERRCODE_SECURITY:
        causes = {
            "keyword": "the message lacks one of the robot's keywords: set `keyword:` to one",
            "sign": "the signature does not match: check `secret` (the robot's SEC… value)",
            "timestamp": "the timestamp is off: this host's clock must be within 1 hour of "
            "real time (check NTP)",
            "ip": "this host's public IP is not in the robot's IP allow-list",
        }
        found = [text for word, text in causes.items() if word in lowered]
        detail = "; ".join(found) or (
            "one of: the keyword (set `keyword:`), the signature (check `secret`), "
            "the timestamp (this host's clock within 1 hour) or the IP allow-list"
        )
        return f"DingTalk's security settings refused the message (310000): {detail}."
    if errcode == ERRCODE_TOKEN:
        return (
            "DingTalk does not know this access_token (300001): the robot was removed or the "
            "URL is mistyped; copy the webhook URL from the robot's settings again."
        )
    if errcode == ERRCODE_TOO_FAST:
        return (
            "Sending too fast (130101): DingTalk allows 20 messages a minute per robot and "
            "throttles the robot for 10 minutes when that is exceeded."
        )
    if errcode == ERRCODE_BUSY:
        return "DingTalk is busy (-1); the alert is retried."
    return None


class DingTalkNotifier(ChatNotifier):
    config_model: ClassVar[type[ReceiverConfig]] = DingTalkConfig
    config: DingTalkConfig
    platform = "dingtalk"
    template_platform = "dingtalk"
    dialect = "im-markdown"
    default_language = "zh-CN"
    platform_title = "DingTalk"
    errcode_keys = ("errcode",)
    # 20 messages a minute per robot; over it DingTalk throttles the robot for 10 minutes.
    default_rate_limit = RateLimitConfig(per_minute=20)

    def _mentions(self, firing: bool) -> list[str]:
        if not firing and not self.config.mention_on_resolved:
            return []
        return [*self.config.at_mobiles, *self.config.at_user_ids]

    def message(self, alert: Alert) -> dict[str, object]:
        """The request body; the keyword and mentions sit in the header, which is never cut."""
        firing = alert.status == "firing"
        mentions = self._mentions(firing)
        mention_text = " ".join(f"@{who}" for who in mentions)
        rendered: RenderedMessage = self.renderer.render(alert, mentions=mention_text)
        title, header = rendered.title, rendered.header
        # DingTalk shows a mention only when "@<mobile or id>" is also in the text.
        header = ensure_line(ensure_line(header, mention_text), self.config.keyword or "")
        title = ensure_prefix(title, self.config.keyword)
        text = self.renderer.cut(header, rendered.body, self.config.max_bytes, "bytes")
        at_all = self.config.at_all and (firing or self.config.mention_on_resolved)
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {
                "atMobiles": self.config.at_mobiles if mentions else [],
                "atUserIds": self.config.at_user_ids if mentions else [],
                "isAtAll": at_all,
            },
        }

    def request_url(self) -> URL:
        """Signed afresh for every attempt: DingTalk refuses a timestamp older than an hour."""
        base = super().request_url()
        if self.config.secret is None:
            return base
        now_ms = int(self.clock.now() * 1000)
        return signed_url(base, now_ms, self.config.secret.get_secret_value())

    def retry_on(self, code: object, what: str) -> RetryAfter | None:
        if code == ERRCODE_TOO_FAST:
            return RetryAfter(what, 60.0)
        if code == ERRCODE_BUSY:
            return RetryAfter(what)
        return None

    def explain(self, status: int, body: object) -> str | None:
        return explain_dingtalk(status, body)
