"""Microsoft Teams through a Workflows (Power Automate) webhook: an Adaptive Card 1.4.

Contract (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook):
POST the flow's URL (its SAS `sig` is the secret) with `{"type":"message","attachments":[
{"contentType":"application/vnd.microsoft.card.adaptive","content":{AdaptiveCard}}]}`; the
old MessageCard is not accepted. At most 28 KB. Any 2xx (usually 202) is success.
"""

from __future__ import annotations

from typing import ClassVar

import orjson
from pydantic import Field

from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.notifiers.base import (
    ReceiverConfig,
)
from kube_event_watcher.notifiers.chat import ChatNotifier, ChatWebhookConfig
from kube_event_watcher.pipeline.model import Alert

MAX_BODY_BYTES = 28 * 1024
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


class TeamsConfig(ChatWebhookConfig):
    """`url` is the Workflows webhook URL ("When a Teams webhook request is received")."""

    max_bytes: int = Field(default=MAX_BODY_BYTES, ge=4096, le=MAX_BODY_BYTES)


def explain_teams(status: int, body: object) -> str | None:
    if status in (401, 403):
        return (
            "The workflow refused the URL's signature: the `sig` in the URL is wrong or was "
            "regenerated; copy the workflow's webhook URL again."
        )
    if status == 404:
        return "No workflow at this URL: it was deleted or turned off."
    if status == 400:
        return "The workflow could not read the card (400): check the template's output."
    if status == 413:
        return "The message is larger than Teams accepts (28 KB); lower `max_bytes`."
    if status == 429:
        return "The workflow is throttled (429); the alert is retried."
    if status >= 500:
        return "The workflow service failed; the alert is retried."
    return None


class TeamsNotifier(ChatNotifier):
    config_model: ClassVar[type[ReceiverConfig]] = TeamsConfig
    config: TeamsConfig
    platform = "teams"
    template_platform = "teams"
    dialect = "markdown"
    platform_title = "Teams"
    # Not documented for Workflows; Power Automate throttles far above one a second.
    default_rate_limit = RateLimitConfig(per_minute=60)

    def payload(self, alert: Alert) -> bytes:
        rendered = self.renderer.render(alert)
        color = "Good" if alert.status == "resolved" else "Attention"
        if alert.status == "firing" and alert.type != "Warning":
            color = "Default"

        def encode(text: str) -> bytes:
            card = {
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [
                    {
                        "type": "TextBlock",
                        "text": rendered.title,
                        "weight": "Bolder",
                        "size": "Medium",
                        "color": color,
                        "wrap": True,
                    },
                    {"type": "TextBlock", "text": text, "wrap": True},
                ],
            }
            attachment = {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}
            return orjson.dumps({"type": "message", "attachments": [attachment]})

        return self.renderer.fit(rendered, self.config.max_bytes, encode)

    def explain(self, status: int, body: object) -> str | None:
        return explain_teams(status, body)
