"""Slack incoming webhook: Block Kit blocks plus a text fallback.

Contract (https://api.slack.com/messaging/webhooks): POST the hook URL with
`{"text": fallback, "blocks": [...]}`; at most 50 blocks, a section's text at most 3000
characters, mrkdwn with `& < >` escaped. Real HTTP status codes: 400 invalid_payload /
invalid_blocks, 403, 404 no_service, 410 channel_is_archived, 429 with Retry-After.
About one message a second per hook.

With a bot `token` and a `channel` instead of `url`, the Web API
(https://api.slack.com/methods/chat.postMessage): POST {api}/chat.postMessage with
`Authorization: Bearer xoxb-…` and `{"channel","text","blocks"}`; answered HTTP 200
`{"ok":true,"channel":"C…","ts":"…"}` or `{"ok":false,"error":"not_in_channel"}`, 429 with
Retry-After. With `edit_in_place`, an incident's updates and its resolve go to
`chat.update` with that channel ID and `ts` (`message_not_found`, `cant_update_message`,
`edit_window_closed`: a new message is posted instead).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import orjson
from pydantic import Field, SecretStr, model_validator
from yarl import URL

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.delivery import RateLimitConfig
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
)
from kube_event_watcher.notifiers.http import HttpAnswer, HttpRequest, short, with_hint
from kube_event_watcher.notifiers.message_refs import MessageRefs, open_refs
from kube_event_watcher.pipeline.model import Alert

SECTION_MAX_CHARS = 3000
HEADER_MAX_CHARS = 150

_EXPLANATIONS = {
    "invalid_payload": "Slack could not read the JSON (invalid_payload).",
    "invalid_blocks": "Slack refused the blocks (invalid_blocks): check the template's output.",
    "invalid_blocks_format": "Slack refused the blocks' structure (invalid_blocks_format).",
    "no_text": "The message has no text (no_text): the template rendered nothing.",
    "invalid_token": "The webhook's token is no longer valid (invalid_token): create a new "
    "incoming webhook and update `url`.",
    "no_service": "The incoming webhook is disabled or removed (no_service): create a new one "
    "and update `url`.",
    "no_service_id": "The webhook URL is incomplete (no_service_id): copy it again.",
    "no_team": "The Slack workspace is gone or the URL is mistyped (no_team).",
    "team_disabled": "The Slack workspace is disabled (team_disabled).",
    "channel_not_found": "The webhook's channel no longer exists (channel_not_found).",
    "channel_is_archived": "The webhook's channel is archived (channel_is_archived): unarchive "
    "it or create a webhook for another channel.",
    "action_prohibited": "A workspace admin restricted posting to this channel "
    "(action_prohibited).",
    "posting_to_general_channel_denied": "Only admins may post to this channel "
    "(posting_to_general_channel_denied).",
    "too_many_attachments": "Too many attachments (too_many_attachments).",
    "rate_limited": "Slack's rate limit (about 1 message a second per webhook); the alert is "
    "retried after Retry-After.",
    # the Web API (a bot token)
    "invalid_auth": "Slack does not accept this bot token (invalid_auth): copy the xoxb- token "
    "from the app's OAuth page again.",
    "not_authed": "No bot token was sent (not_authed).",
    "token_revoked": "The bot token was revoked (token_revoked): reinstall the app.",
    "account_inactive": "The app or its installation is gone (account_inactive).",
    "missing_scope": "The bot lacks the chat:write scope (missing_scope): add it and reinstall.",
    "not_in_channel": "The bot is not a member of the channel (not_in_channel): /invite it.",
    "is_archived": "The channel is archived (is_archived).",
    "msg_too_long": "The message is too long for Slack (msg_too_long).",
}
# Web API errors worth another try; every other `error` is final.
_API_RETRY = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# chat.update's answers that mean the message cannot be updated: post a new one.
_CANNOT_UPDATE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


class SlackConfig(ChatSettings):
    """Either `url`, an incoming webhook (https://hooks.slack.com/services/…, the secret), or a
    bot `token` (xoxb-…, with chat:write) and the `channel` (an ID like C0123456789, or #name)."""

    url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = Field(default=None, min_length=1)
    api_url: str = Field(default="https://slack.com/api", pattern=r"^https?://")
    edit_in_place: bool = False
    """Bot token only: an incident's updates and resolve update its message (chat.update)."""
    mention: str | None = Field(
        default=None, description="mrkdwn added to firing alerts, e.g. <!here> or <@U123>"
    )
    mention_on_resolved: bool = False

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        if (self.url is None) == (self.token is None):
            raise ValueError(
                "give either url (an incoming webhook) or token and channel (a bot, "
                "chat.postMessage), not both or neither"
            )
        if self.url is not None:
            check_http_url(self.url)
            if self.edit_in_place:
                raise ValueError(
                    "edit_in_place: needs token and channel: an incoming webhook cannot "
                    "change what it sent"
                )
        elif self.channel is None:
            raise ValueError("channel: needed with token (an ID like C0123456789, or #name)")
        return self


def explain_slack(status: int, body: object) -> str | None:
    if isinstance(body, dict):
        text = str(body.get("error", ""))
    else:
        text = body.strip() if isinstance(body, str) else ""
    if text in _EXPLANATIONS:
        return _EXPLANATIONS[text]
    if status == 429 or text == "ratelimited":
        return _EXPLANATIONS["rate_limited"]
    if status >= 500:
        return "Slack's server failed; the alert is retried."
    return None


class SlackNotifier(ChatNotifier):
    config_model: ClassVar[type[ReceiverConfig]] = SlackConfig
    config: SlackConfig
    platform = "slack"
    template_platform = "slack"
    dialect = "slack"
    platform_title = "Slack"
    # About one message a second per incoming webhook (chat.postMessage: per channel).
    default_rate_limit = RateLimitConfig(per_minute=60)

    def __init__(self, config: SlackConfig, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        api = config.api_url.rstrip("/")
        self.post_url = URL(f"{api}/chat.postMessage")
        self.update_url = URL(f"{api}/chat.update")
        self.refs: MessageRefs | None = None

    @property
    def bot(self) -> bool:
        return self.config.token is not None

    async def start(self) -> None:
        await super().start()
        if self.config.edit_in_place and self.refs is None:
            self.refs = open_refs(self.state_dir, self.name)

    def request_url(self) -> URL:
        if self.config.url is not None:
            return URL(self.config.url.get_secret_value(), encoded=True)
        return self.post_url

    def _auth(self) -> dict[str, str]:
        assert self.config.token is not None
        return {"Authorization": f"Bearer {self.config.token.get_secret_value()}"}

    def request(self, alert: Alert) -> HttpRequest:
        if not self.bot:
            return super().request(alert)
        body = {**self.message(alert), "channel": self.config.channel}
        return HttpRequest(self.post_url, orjson.dumps(body), self._auth())

    async def send(self, alert: Alert) -> DeliveryResult:
        if not self.bot:
            return await super().send(alert)
        ref = self.refs.get(alert.key) if self.refs is not None else None
        if ref is not None:
            channel, _, ts = ref.partition(" ")
            body = {**self.message(alert), "channel": channel, "ts": ts}
            answer = await self.post(self.update_url, orjson.dumps(body), self._auth())
            if isinstance(answer, RetryAfter):
                return answer
            if _api_error(answer) not in _CANNOT_UPDATE:
                result = self.judge(answer)
                if isinstance(result, Delivered) and self.refs is not None:
                    self.refs.told(alert, ref)
                    return Delivered(f"updated message {ts}")
                return result
            # deleted, or no longer editable: tell it in a new message
        request = self.request(alert)
        answer = await self.post(request.url, request.body, request.headers)
        if isinstance(answer, RetryAfter):
            return answer
        result = self.judge(answer)
        posted: dict[str, Any] = answer.body if isinstance(answer.body, dict) else {}
        if isinstance(result, Delivered) and self.refs is not None:
            where, stamp = posted.get("channel"), posted.get("ts")
            if isinstance(where, str) and isinstance(stamp, str):
                self.refs.told(alert, f"{where} {stamp}")
        return result

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        if not self.bot or not 200 <= answer.status < 300:
            return self.judge_by_status(answer)
        error = _api_error(answer)
        if error is None:
            return Delivered()
        what = f"Slack {error}: {short(answer.text)}"
        if error in _API_RETRY:
            return RetryAfter(what)
        return PermanentFailure(with_hint(what, explain_slack(answer.status, answer.body)))

    def message(self, alert: Alert) -> dict[str, object]:
        firing = alert.status == "firing"
        mention = self.config.mention if firing or self.config.mention_on_resolved else None
        rendered = self.renderer.render(alert, mentions=mention or "")
        header = rendered.header
        header = ensure_line(header, mention or "", "\n")
        title = rendered.title[:HEADER_MAX_CHARS]
        blocks: list[dict[str, object]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}
        ]
        if header:
            head_text = self.renderer.cut(header, "", SECTION_MAX_CHARS, "chars")
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": head_text}})
        if rendered.body:
            body_text = self.renderer.cut("", rendered.body, SECTION_MAX_CHARS, "chars")
            blocks.append({"type": "divider"})
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body_text}})
        # `text` is what notifications and screen readers show.
        return {"text": title, "blocks": blocks}

    def explain(self, status: int, body: object) -> str | None:
        return explain_slack(status, body)


def _api_error(answer: HttpAnswer) -> str | None:
    """The Web API's `error` (None when `ok` is true); a body that is not the Web API's
    reads as an error of its own."""
    body: Any = answer.body
    if not isinstance(body, dict):
        return "invalid_response"
    if body.get("ok") is True:
        return None
    return str(body.get("error", "invalid_response"))
