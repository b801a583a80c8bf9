"""Slack incoming webhook: Block Kit blocks plus a text fallback.

Contract (https://api.slack.com/messaging/webhooks): POST the hook URL with
`{"text": fallback, "blocks": [...]}`; at most 50 blocks, a section's text at most 3000
characters, mrkdwn with `& < >` escaped. Real HTTP status codes: 400 invalid_payload /
invalid_blocks, 403, 404 no_service, 410 channel_is_archived, 429 with Retry-After.
About one message a second per hook.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.notifiers.base import (
    ReceiverConfig,
)
from kube_event_watcher.notifiers.chat import ChatNotifier, ChatWebhookConfig, ensure_line
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
}


class SlackConfig(ChatWebhookConfig):
    """`url` is the incoming webhook (https://hooks.slack.com/services/…): it is the secret."""

    mention: str | None = Field(
        default=None, description="mrkdwn added to firing alerts, e.g. <!here> or <@U123>"
    )
    mention_on_resolved: bool = False


def explain_slack(status: int, body: object) -> str | None:
    text = body.strip() if isinstance(body, str) else ""
    if text in _EXPLANATIONS:
        return _EXPLANATIONS[text]
    if status == 429:
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
    # About one message a second per incoming webhook.
    default_rate_limit = RateLimitConfig(per_minute=60)

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
