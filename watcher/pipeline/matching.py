"""Field matchers shared by filters (and later routes): compiled once, full-match regexes.

Per-event code here is generated once from the config: a field is read by a Python
expression on the Occurrence tuple (`o[6]`, not a getter function per field), because each
function call costs ~0.1–0.3 µs and the filter and the dedup key run once per event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watcher.config.schema import MatchRule
from watcher.pipeline.model import ObjectRef, Occurrence


def _at(field: str) -> str:
    return f"o[{Occurrence._fields.index(field)}]"


def _ref(field: str) -> str:
    return f"{_at('regarding')}[{ObjectRef._fields.index(field)}]"


FIELD_EXPRESSIONS: dict[str, str] = {
    "cluster": _at("cluster"),
    "namespace": f"({_ref('namespace')} or {_at('namespace')})",
    "kind": _ref("kind"),
    "name": _ref("name"),
    "reason": _at("reason"),
    "type": _at("type"),
    "reporting_controller": _at("reporting_controller"),
    "note": _at("note"),
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


FIELD_GETTERS: dict[str, Callable[[Occurrence], str]] = {
    name: compile_function(expression) for name, expression in FIELD_EXPRESSIONS.items()
}


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

    def matches(self, occ: Occurrence) -> bool:
        # Plain loops: all()/any() over a generator cost ~0.5 µs more per event here.
        for name, pattern in self.tests:
            if pattern.fullmatch(FIELD_GETTERS[name](occ)) is None:
                return False
        return True


def any_matches(matchers: Sequence[Matcher], occ: Occurrence) -> bool:
    for matcher in matchers:  # noqa: SIM110
        if matcher.matches(occ):
            return True
    return False


def compile_any(matchers: Sequence[Matcher]) -> Callable[[Occurrence], bool]:
    """One function answering `any_matches(matchers, o)`, generated from the matchers."""
    patterns: dict[str, Any] = {}
    body = " or ".join(m.expression(patterns) for m in matchers) or "False"
    return compile_function(body, patterns)
