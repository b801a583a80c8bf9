"""The cheap drop stage: what nobody wants to hear about is dropped before it is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kube_event_watcher.config.schema import FiltersConfig
from kube_event_watcher.pipeline.grouping import key_function
from kube_event_watcher.pipeline.matching import (
    LOW_CARDINALITY,
    Matcher,
    any_expression,
    compile_function,
)
from kube_event_watcher.pipeline.model import Occurrence

# Remembered decisions, at most: far more than the distinct (namespace, reason, ...) values
# of a cluster, and a few MB at worst; the memo starts over when full.
MEMO_SIZE = 65_536


class EventFilter:
    """`passes(o)`: not dropped, and kept when there are keep rules.

    Runs once per event, so the rules are compiled into one generated function, and when they read
    only low-cardinality fields (namespace, reason, kind, ...) each decision is remembered
    by those fields' values: a dict lookup instead of the regexes.
    """

    def __init__(self, config: FiltersConfig) -> None:
        drop = tuple(Matcher.from_rule(r) for r in config.drop)
        keep = tuple(Matcher.from_rule(r) for r in config.keep)
        patterns: dict[str, Any] = {}
        kept = any_expression(keep, patterns) if keep else "True"
        rules = f"{kept} and not {any_expression(drop, patterns)}"
        decide: Callable[[Occurrence], bool] = compile_function(rules, patterns)
        fields = sorted(frozenset().union(*(m.fields for m in drop + keep)))
        if not fields:
            self.passes: Callable[[Occurrence], bool] = lambda o: True
        elif set(fields) <= LOW_CARDINALITY:
            self.passes = self._remembering(decide, key_function(fields))
        else:
            self.passes = decide

    @staticmethod
    def _remembering(
        decide: Callable[[Occurrence], bool], key_of: Callable[[Occurrence], tuple[str, ...]]
    ) -> Callable[[Occurrence], bool]:
        memo: dict[tuple[str, ...], bool] = {}

        def passes(o: Occurrence) -> bool:
            key = key_of(o)
            known = memo.get(key)
            if known is None:
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                known = memo[key] = decide(o)
            return known

        return passes
