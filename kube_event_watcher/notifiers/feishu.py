"""Feishu / Lark custom bot (飞书自定义机器人): signed interactive cards.

Contract (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot): POST
.../open-apis/bot/v2/hook/{id} with `{"msg_type":"interactive","card":{…}}` (the card is an
object), and for signed bots top-level `timestamp` (epoch seconds, within 1 h) and
`sign` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")). Body ≤ 20 KB.
Errors in an HTTP 200 body as `code`. 100 messages a minute, 5 a second.

A custom bot cannot change what it sent. With an app (`app_id`, `app_secret`, `chat_id`
instead of `url`), the Open API: a `tenant_access_token` from
POST {api}/auth/v3/tenant_access_token/internal (valid 2 h, kept and renewed early), then
POST {api}/im/v1/messages?receive_id_type=chat_id with `{"receive_id","msg_type":
"interactive","content": <the card as a JSON string>}`, answered `{"code":0,"data":
{"message_id":"om_…"}}`; errors as HTTP 400 with `code` (230002 bot not in the chat, 230027
missing permission, 230020 rate limit, 9999166x token). With `edit_in_place`, an incident's
updates and resolve PATCH {api}/im/v1/messages/{message_id} with the new card; cards that
may be updated say `"update_multi": true` in their config, before and after. A recalled
message (230011) or one older than 14 days (230031) is sent again as a new message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, ClassVar, Literal, Self

import orjson
from pydantic import Field, SecretStr, model_validator
from yarl import URL

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.config.secrets import registry
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.chat import (
    ChatNotifier,
    ChatSettings,
    check_http_url,
    ensure_line,
    ensure_prefix,
)
from kube_event_watcher.notifiers.http import HttpAnswer, judge_status, short, with_hint
from kube_event_watcher.notifiers.message_refs import MessageRefs, open_refs
from kube_event_watcher.pipeline.model import Alert

MAX_BODY_BYTES = 20 * 1024

CODE_RATE = 11232
CODE_BAD_REQUEST = 9499
CODE_SIGN = 19021
CODE_IP = 19022
CODE_KEYWORD = 19024

# The Open API (an app): message errors, and the token's.
CODE_APP_BOT_NOT_IN_CHAT = 230002
CODE_APP_BOT_DISABLED = 230006
CODE_APP_RECALLED = 230011
CODE_APP_RATE = 230020
CODE_APP_TOO_LONG = 230025
CODE_APP_PERMISSION = 230027
CODE_APP_AUDIT = 230028
CODE_APP_TOO_OLD = 230031
CODE_APP_CARD = 230099
# Invalid, missing or expired tenant_access_token: get a new one and try again.
TOKEN_CODES = frozenset({99991661, 99991663, 99991668, 99991677})
# The message can no longer be updated: tell it in a new one.
_CANNOT_UPDATE = frozenset({CODE_APP_RECALLED, CODE_APP_TOO_OLD})
# A token is renewed this long before it expires (Feishu hands out a new one in its last
# 30 minutes; 2 h in all).
TOKEN_MARGIN_SECONDS = 300.0

_EXPLANATIONS = {
    CODE_RATE: "Feishu's rate limit (11232): 100 messages a minute and 5 a second per bot; "
    "the alert is retried.",
    CODE_BAD_REQUEST: "Feishu refused the request (9499): the body is malformed or larger "
    "than 20 KB; lower `max_bytes` or shorten the template.",
    CODE_SIGN: "The signature check failed (19021): check `secret` (the bot's signing secret) "
    "and that this host's clock is within 1 hour of real time (check NTP).",
    CODE_IP: "This host's public IP is not in the bot's IP allow-list (19022).",
    CODE_KEYWORD: "The message lacks one of the bot's keywords (19024): set `keyword:`.",
    CODE_APP_BOT_NOT_IN_CHAT: "The app's bot is not in the chat (230002): add the bot to the "
    "group, or check `chat_id` (oc_…).",
    CODE_APP_BOT_DISABLED: "The app has no bot ability (230006): enable it under the app's "
    "features (机器人) and publish a version.",
    CODE_APP_PERMISSION: "The app lacks a permission (230027): grant im:message:send_as_bot "
    "(and im:message:update for edit_in_place) and publish a version.",
    CODE_APP_TOO_LONG: "The card is longer than 30 KB (230025): lower `max_bytes`.",
    CODE_APP_AUDIT: "Feishu's DLP review refused the message (230028): it holds something "
    "like a phone number or a personal e-mail address.",
    CODE_APP_CARD: "Feishu could not build the card (230099): check the template's output.",
    10003: "The token request was refused (10003): check `app_id`.",
    10014: "The app secret is wrong (10014): copy `app_secret` from the app's credentials page.",
}


class FeishuConfig(ChatSettings):
    """Either `url`, a custom bot's webhook (…/open-apis/bot/v2/hook/…; `secret` its signing
    secret), or an app: `app_id`, `app_secret` and the `chat_id` (oc_…) its bot is in."""

    url: SecretStr | None = None
    secret: SecretStr | None = None
    app_id: str | None = Field(default=None, pattern=r"^cli_\w+$")
    app_secret: SecretStr | None = None
    chat_id: str | None = Field(default=None, min_length=1)
    receive_id_type: Literal["chat_id", "open_id", "union_id", "user_id", "email"] = "chat_id"
    api_url: str = Field(default="https://open.feishu.cn/open-apis", pattern=r"^https?://")
    """Lark (international): https://open.larksuite.com/open-apis."""
    edit_in_place: bool = False
    """App only: an incident's updates and resolve update its card (PATCH im/v1/messages)."""
    keyword: str | None = Field(default=None, min_length=1)
    mention_all: bool = False
    mention_user_ids: list[str] = Field(default_factory=list, description="open_ids (ou_…)")
    mention_on_resolved: bool = False
    max_bytes: int = Field(default=MAX_BODY_BYTES, ge=2048, le=MAX_BODY_BYTES)

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        app = (self.app_id, self.app_secret, self.chat_id)
        if self.url is not None:
            if any(part is not None for part in app):
                raise ValueError(
                    "give either url (a custom bot) or app_id, app_secret and chat_id (an "
                    "app), not both"
                )
            check_http_url(self.url)
            if self.edit_in_place:
                raise ValueError(
                    "edit_in_place: needs an app (app_id, app_secret, chat_id): a custom bot "
                    "cannot change what it sent"
                )
            return self
        missing = [
            name
            for name, part in zip(("app_id", "app_secret", "chat_id"), app, strict=True)
            if part is None
        ]
        if len(missing) == 3:
            raise ValueError(
                "give either url (a custom bot) or app_id, app_secret and chat_id (an app)"
            )
        if missing:
            raise ValueError(
                f"{', '.join(missing)}: needed with an app (app_id, app_secret, chat_id)"
            )
        if self.secret is not None:
            raise ValueError("secret: signs a custom bot's webhook; an app has none")
        return self


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
    # (An app's bot may send 5 a second to one chat: the same bucket fits it.)
    default_rate_limit = RateLimitConfig(per_minute=100, burst=5)

    def __init__(self, config: FeishuConfig, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        api = config.api_url.rstrip("/")
        self.token_url = URL(f"{api}/auth/v3/tenant_access_token/internal")
        self.messages_url = URL(f"{api}/im/v1/messages").with_query(
            receive_id_type=config.receive_id_type
        )
        self.message_base = f"{api}/im/v1/messages"
        self.refs: MessageRefs | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0

    @property
    def app(self) -> bool:
        return self.config.app_id is not None

    async def start(self) -> None:
        await super().start()
        if self.config.edit_in_place and self.refs is None:
            self.refs = open_refs(self.state_dir, self.name)

    def request_url(self) -> URL:
        if self.config.url is None:
            return self.messages_url
        return URL(self.config.url.get_secret_value(), encoded=True)

    async def send(self, alert: Alert) -> DeliveryResult:
        if not self.app:
            return await super().send(alert)
        token = await self._tenant_token()
        if not isinstance(token, str):
            return token
        auth = {"Authorization": f"Bearer {token}"}
        ref = self.refs.get(alert.key) if self.refs is not None else None
        if ref is not None:
            card = orjson.loads(self.payload(alert))["content"]
            body = orjson.dumps({"content": card})
            url = URL(f"{self.message_base}/{ref}")
            answer = await self.post(url, body, auth, method="PATCH")
            if isinstance(answer, RetryAfter):
                return answer
            if _code(answer) not in _CANNOT_UPDATE:
                result = self.judge(answer)
                if isinstance(result, Delivered) and self.refs is not None:
                    self.refs.told(alert, ref)
                    return Delivered(f"updated message {ref}")
                return result
            # recalled, or older than 14 days: tell it in a new message
        answer = await self.post(self.messages_url, self.payload(alert), auth)
        if isinstance(answer, RetryAfter):
            return answer
        result = self.judge(answer)
        data = answer.body.get("data") if isinstance(answer.body, dict) else None
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if isinstance(result, Delivered) and self.refs is not None and isinstance(message_id, str):
            self.refs.told(alert, message_id)
        return result

    async def _tenant_token(self) -> str | RetryAfter | PermanentFailure:
        """The app's tenant_access_token, asked for again shortly before it expires."""
        now = self.clock.monotonic()
        if self._token is not None and now < self._token_renew_at:
            return self._token
        assert self.config.app_id is not None and self.config.app_secret is not None
        secret = self.config.app_secret.get_secret_value()
        body = orjson.dumps({"app_id": self.config.app_id, "app_secret": secret})
        answer = await self.post(self.token_url, body)
        if isinstance(answer, RetryAfter):
            return answer
        token = answer.body.get("tenant_access_token") if isinstance(answer.body, dict) else None
        if _code(answer) == 0 and isinstance(token, str) and token:
            registry.register(token)  # masked wherever it could leak, like the config's secrets
            self.last_answer = registry.redact(self.last_answer or "")
            expire = answer.body.get("expire") if isinstance(answer.body, dict) else None
            lifetime = float(expire) if isinstance(expire, int | float) else 7200.0
            self._token = token
            self._token_renew_at = now + max(lifetime - TOKEN_MARGIN_SECONDS, 60.0)
            return token
        result = self.judge(answer)
        if isinstance(result, RetryAfter):
            return RetryAfter(f"tenant_access_token: {result.reason}", result.seconds)
        if isinstance(result, PermanentFailure):
            return PermanentFailure(f"tenant_access_token: {result.reason}")
        return PermanentFailure(f"tenant_access_token: no token in {short(answer.text)}")

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        if not self.app:
            return super().judge(answer)
        # The Open API puts its code in the body of 4xx answers too.
        code = _code(answer)
        if code is None:
            if 200 <= answer.status < 300:
                return PermanentFailure(f"Feishu answered without code: {short(answer.text)}")
            return judge_status(answer, self.clock.now(), self.platform_title)
        if code == 0 and 200 <= answer.status < 300:
            return Delivered()
        message = answer.body.get("msg", "") if isinstance(answer.body, dict) else ""
        what = f"Feishu code {code}: {short(str(message))}"
        if code in TOKEN_CODES:
            self._token = None  # revoked or expired early: the next attempt asks again
            return RetryAfter(what, 0.0, max_retries=3)
        if code in (CODE_APP_RATE, CODE_RATE) or answer.status == 429:
            return RetryAfter(what, 1.0)
        if answer.status >= 500:
            return RetryAfter(what)
        return PermanentFailure(with_hint(what, self.explain(answer.status, answer.body)))

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

        app = self.app

        def encode(text: str) -> bytes:
            card: dict[str, Any] = {
                # update_multi: a shared card, which the app may update (edit_in_place).
                "config": {"wide_screen_mode": True, **({"update_multi": True} if app else {})},
                "header": {
                    "title": {"tag": "plain_text", "content": title},
                    "template": card_color(alert),
                },
                "elements": [{"tag": "markdown", "content": text}],
            }
            if app:
                return orjson.dumps(
                    {
                        "receive_id": self.config.chat_id,
                        "msg_type": "interactive",
                        "content": orjson.dumps(card).decode(),
                    }
                )
            return orjson.dumps({**signature, "msg_type": "interactive", "card": card})

        message = type(rendered)(title=title, header=header, body=rendered.body)
        return self.renderer.fit(message, self.config.max_bytes, encode)

    def retry_on(self, code: object, what: str) -> RetryAfter | None:
        return RetryAfter(what, 1.0) if code == CODE_RATE else None

    def explain(self, status: int, body: object) -> str | None:
        return explain_feishu(status, body)


def _code(answer: HttpAnswer) -> object:
    """The Open API's `code` (None when the body has none)."""
    body = answer.body
    return body.get("code") if isinstance(body, dict) else None
