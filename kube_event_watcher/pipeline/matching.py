"""Field matchers shared by filters and thresholds: compiled once, full-match regexes.

Per-event code here is generated once from the config: a field is read by a Python
expression on the Occurrence tuple (`o[6]`, not a getter function per field), because each
function call costs ~0.1–0.3 µs and the filter and the dedup key run once per event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kube_event_watcher.config.schema import MatchRule
from kube_event_watcher.pipeline.model import ObjectRef, Occurrence


def occurrence_item(field: str) -> str:
    """The expression reading Occurrence field `field` off `o`: `o[6]` for reason."""
    return f"o[{Occurrence._fields.index(field)}]"


def regarding_item(field: str) -> str:
    """The expression reading ObjectRef field `field` of `o.regarding`: `o[9][3]` for uid."""
    return f"{occurrence_item('regarding')}[{ObjectRef._fields.index(field)}]"


FIELD_EXPRESSIONS: dict[str, str] = {
    "cluster": occurrence_item("cluster"),
    "namespace": f"({regarding_item('namespace')} or {occurrence_item('namespace')})",
    "kind": regarding_item("kind"),
    "name": regarding_item("name"),
    "reason": occurrence_item("reason"),
    "type": occurrence_item("type"),
    "reporting_controller": occurrence_item("reporting_controller"),
    "note": occurrence_item("note"),
}
"""How each matchable field is read off an Occurrence `o`, as a Python expression."""

LOW_CARDINALITY = frozenset(
    {"cluster", "namespace", "kind", "reason", "type", "reporting_controller"}
)
"""Fields with few distinct values: a decision on them alone is worth remembering."""


def compile_function(
    expression: str, names: Mapping[str, Any] | None = None
) -> Callable[[Occurrence], Any]:
    """`lambda o: <expression>`, with `names` in its globals. The expression is built here
    from the fixed tables above (never from config text), so eval is safe."""
    function: Callable[[Occurrence], Any] = eval(
        f"lambda o: {expression}", {"__builtins__": {}, **(names or {})}
    )
    return function


@dataclass(frozen=True, slots=True)
class Matcher:
    """All of `tests` must match: (field name, compiled pattern)."""

    tests: tuple[tuple[str, re.Pattern[str]], ...]

    @classmethod
    def from_rule(cls, rule: MatchRule) -> Matcher:
        tests = tuple(
            (name, re.compile(pattern))
            for name, pattern in rule.model_dump(exclude_none=True).items()
        )
        return cls(tests)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.tests)

    def expression(self, patterns: dict[str, Any]) -> str:
        """This matcher as one Python expression on `o`; its patterns go into `patterns`."""
        parts = []
        for name, pattern in self.tests:
            label = f"p{len(patterns)}"
            patterns[label] = pattern.fullmatch
            parts.append(f"{label}({FIELD_EXPRESSIONS[name]}) is not None")
        return "(" + " and ".join(parts or ["True"]) + ")"


def any_expression(matchers: Sequence[Matcher], patterns: dict[str, Any]) -> str:
    """Whether any of `matchers` matches `o`, as one expression; patterns go into `patterns`."""
    return "(" + (" or ".join(m.expression(patterns) for m in matchers) or "False") + ")"


def compile_any(matchers: Sequence[Matcher]) -> Callable[[Occurrence], bool]:
    """One generated function answering whether any of `matchers` matches an occurrence."""
    patterns: dict[str, Any] = {}
    return compile_function(any_expression(matchers, patterns), patterns)
