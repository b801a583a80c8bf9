"""Notifier types by name: the built-ins and any found in the entry-point group.

A notifier's module (and what it pulls in: templates, Jinja2, SMTP) is imported the first
time a receiver of that type is used, not at start-up: most configs use one or two types,
and importing all twelve cost ~0.15 s of every start (bench/RESULTS.md, start-up).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points

import structlog

from kube_event_watcher.notifiers.base import Notifier, ReceiverConfig

ENTRY_POINT_GROUP = "kube_event_watcher.notifiers"
_BUILTIN_PATHS: dict[str, str] = {
    "stdout": "kube_event_watcher.notifiers.stdout:StdoutNotifier",
    "file": "kube_event_watcher.notifiers.file:FileNotifier",
    "webhook": "kube_event_watcher.notifiers.webhook:WebhookNotifier",
    "alertmanager": "kube_event_watcher.notifiers.alertmanager:AlertmanagerNotifier",
    "pagerduty": "kube_event_watcher.notifiers.pagerduty:PagerDutyNotifier",
    "dingtalk": "kube_event_watcher.notifiers.dingtalk:DingTalkNotifier",
    "wecom": "kube_event_watcher.notifiers.wecom:WeComNotifier",
    "feishu": "kube_event_watcher.notifiers.feishu:FeishuNotifier",
    "slack": "kube_event_watcher.notifiers.slack:SlackNotifier",
    "teams": "kube_event_watcher.notifiers.teams:TeamsNotifier",
    "telegram": "kube_event_watcher.notifiers.telegram:TelegramNotifier",
    "email": "kube_event_watcher.notifiers.email:EmailNotifier",
    "kafka": "kube_event_watcher.notifiers.kafka:KafkaNotifier",
    "nats": "kube_event_watcher.notifiers.nats:NatsNotifier",
    "otlp": "kube_event_watcher.notifiers.otlp:OtlpNotifier",
}

log = structlog.get_logger(__name__)


class NotifierTypes(Mapping[str, type[Notifier]]):
    """Notifier classes by type name, each imported on first use. A plugin that fails to
    load is logged once and then counts as unknown (a broken plugin must not stop us)."""

    def __init__(self, plugins: bool = True) -> None:
        self._builtins = dict(_BUILTIN_PATHS)
        self._plugins: dict[str, EntryPoint] = {}
        if plugins:
            for entry in entry_points(group=ENTRY_POINT_GROUP):
                if entry.name in self._builtins and entry.value.startswith("kube_event_watcher."):
                    continue  # our own entry points name the built-ins again
                self._plugins[entry.name] = entry
        self._loaded: dict[str, type[Notifier]] = {}
        self._broken: set[str] = set()

    def __getitem__(self, name: str) -> type[Notifier]:
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        if name in self._broken:
            raise KeyError(name)
        if name in self._plugins:
            cls = self._load_plugin(name, self._plugins[name])
        elif name in self._builtins:
            module, _, attribute = self._builtins[name].partition(":")
            cls = getattr(importlib.import_module(module), attribute)
        else:
            raise KeyError(name)
        self._loaded[name] = cls
        return cls

    def _load_plugin(self, name: str, entry: EntryPoint) -> type[Notifier]:
        try:
            cls = entry.load()
        except Exception as exc:
            self._broken.add(name)
            log.error("notifier plugin failed to load", plugin=name, error=str(exc))
            raise KeyError(name) from None
        if not (isinstance(cls, type) and issubclass(cls, Notifier)):
            self._broken.add(name)
            log.error("notifier plugin is not a Notifier subclass", plugin=name)
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        names = {*self._builtins, *self._plugins} - self._broken
        return iter(sorted(names))

    def __len__(self) -> int:
        return len({*self._builtins, *self._plugins} - self._broken)


class ConfigModels(Mapping[str, type[ReceiverConfig]]):
    """Each type's config model, importing the notifier only when a receiver uses it."""

    def __init__(self, types: NotifierTypes) -> None:
        self._types = types

    def __getitem__(self, name: str) -> type[ReceiverConfig]:
        return self._types[name].config_model

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)


BUILTINS = NotifierTypes(plugins=False)
"""The built-in notifier types."""


def notifier_types() -> NotifierTypes:
    """Built-ins plus third-party plugins (`kube_event_watcher.notifiers` entry points)."""
    return NotifierTypes()


def config_models() -> ConfigModels:
    return ConfigModels(notifier_types())


def build_notifier(config: ReceiverConfig, types: Mapping[str, type[Notifier]]) -> Notifier:
    return types[config.type](config)
