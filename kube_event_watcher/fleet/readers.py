"""The stream reader for `fleet.consume`, by the receiver type it names."""

from __future__ import annotations

from pydantic import BaseModel

from kube_event_watcher.fleet.kafka import KafkaStreamReader
from kube_event_watcher.fleet.nats import NatsStreamReader
from kube_event_watcher.fleet.runner import StreamReader
from kube_event_watcher.notifiers.kafka import KafkaConfig
from kube_event_watcher.notifiers.nats import NatsConfig


def stream_reader(config: BaseModel | None) -> StreamReader:
    if isinstance(config, KafkaConfig):
        return KafkaStreamReader(config)
    if isinstance(config, NatsConfig):
        return NatsStreamReader(config)
    raise TypeError(f"fleet.consume: no stream reader for {type(config).__name__}")
