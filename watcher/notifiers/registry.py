"""Notifier types by name: the built-ins and any found in the entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

import structlog

from watcher.notifiers.alertmanager import AlertmanagerNotifier
from watcher.notifiers.base import Notifier, ReceiverConfig
from watcher.notifiers.dingtalk import DingTalkNotifier
from watcher.notifiers.email import EmailNotifier
from watcher.notifiers.feishu import FeishuNotifier
from watcher.notifiers.file import FileNotifier
from watcher.notifiers.pagerduty import PagerDutyNotifier
from watcher.notifiers.slack import SlackNotifier
from watcher.notifiers.stdout import StdoutNotifier
from watcher.notifiers.teams import TeamsNotifier
from watcher.notifiers.telegram import TelegramNotifier
from watcher.notifiers.webhook import WebhookNotifier
from watcher.notifiers.wecom import WeComNotifier

ENTRY_POINT_GROUP = "kube_event_watcher.notifiers"
BUILTINS: dict[str, type[Notifier]] = {
    "stdout": StdoutNotifier,
    "file": FileNotifier,
    "webhook": WebhookNotifier,
    "alertmanager": AlertmanagerNotifier,
    "pagerduty": PagerDutyNotifier,
    "dingtalk": DingTalkNotifier,
    "wecom": WeComNotifier,
    "feishu": FeishuNotifier,
    "slack": SlackNotifier,
    "teams": TeamsNotifier,
    "telegram": TelegramNotifier,
    "email": EmailNotifier,
}

log = structlog.get_logger(__name__)


def notifier_types() -> dict[str, type[Notifier]]:
    """Built-ins plus third-party plugins (`kube_event_watcher.notifiers` entry points)."""
    found = dict(BUILTINS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found and entry.value.startswith("watcher."):
            continue
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plugin must not stop the daemon
            log.error("notifier plugin failed to load", plugin=entry.name, error=str(exc))
            continue
        if isinstance(cls, type) and issubclass(cls, Notifier):
            found[entry.name] = cls
        else:
            log.error("notifier plugin is not a Notifier subclass", plugin=entry.name)
    return found


def config_models() -> dict[str, type[ReceiverConfig]]:
    return {name: cls.config_model for name, cls in notifier_types().items()}


def build_notifier(config: ReceiverConfig, types: dict[str, type[Notifier]]) -> Notifier:
    return types[config.type](config)
