"""The cheap drop stage: what nobody wants to hear about is dropped before it is stored."""

from __future__ import annotations

from watcher.config.schema import FiltersConfig
from watcher.pipeline.matching import Matcher, any_matches
from watcher.pipeline.model import Occurrence


class EventFilter:
    def __init__(self, config: FiltersConfig) -> None:
        self._drop = tuple(Matcher.from_rule(r) for r in config.drop)
        self._keep = tuple(Matcher.from_rule(r) for r in config.keep)

    def passes(self, occ: Occurrence) -> bool:
        if self._keep and not any_matches(self._keep, occ):
            return False
        return not any_matches(self._drop, occ)
