"""Field matchers shared by filters (and later routes): compiled once, full-match regexes."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from watcher.config.schema import MatchRule
from watcher.pipeline.model import Occurrence

FIELD_GETTERS: dict[str, Callable[[Occurrence], str]] = {
    "cluster": lambda o: o.cluster,
    "namespace": lambda o: o.regarding.namespace or o.namespace,
    "kind": lambda o: o.regarding.kind,
    "name": lambda o: o.regarding.name,
    "reason": lambda o: o.reason,
    "type": lambda o: o.type,
    "reporting_controller": lambda o: o.reporting_controller,
    "note": lambda o: o.note,
}


@dataclass(frozen=True, slots=True)
class Matcher:
    """All of `tests` must match: (field getter, compiled pattern)."""

    tests: tuple[tuple[Callable[[Occurrence], str], re.Pattern[str]], ...]

    @classmethod
    def from_rule(cls, rule: MatchRule) -> Matcher:
        tests = tuple(
            (FIELD_GETTERS[name], re.compile(pattern))
            for name, pattern in rule.model_dump(exclude_none=True).items()
        )
        return cls(tests)

    def matches(self, occ: Occurrence) -> bool:
        # Plain loops: all()/any() over a generator cost ~0.5 µs more per event here.
        for get, pattern in self.tests:  # noqa: SIM110
            if pattern.fullmatch(get(occ)) is None:
                return False
        return True


def any_matches(matchers: Sequence[Matcher], occ: Occurrence) -> bool:
    for matcher in matchers:  # noqa: SIM110
        if matcher.matches(occ):
            return True
    return False
