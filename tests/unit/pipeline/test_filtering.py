from __future__ import annotations

from tests.factories import occurrence
from watcher.config.schema import FiltersConfig
from watcher.pipeline.filtering import EventFilter
from watcher.pipeline.model import Occurrence


def occ(reason: str, namespace: str = "shop", kind: str = "Pod") -> Occurrence:
    return occurrence("web-0", reason=reason, namespace=namespace, kind=kind)


def test_drop_rules_are_full_match_regexes() -> None:
    f = EventFilter(FiltersConfig.model_validate({"drop": [{"reason": "^(Pulled|Created)$"}]}))
    assert not f.passes(occ("Pulled"))
    assert f.passes(occ("PulledAgain"))


def test_all_fields_of_a_rule_must_match() -> None:
    f = EventFilter(
        FiltersConfig.model_validate({"drop": [{"reason": "BackOff", "namespace": "kube-.*"}]})
    )
    assert not f.passes(occ("BackOff", namespace="kube-system"))
    assert f.passes(occ("BackOff", namespace="shop"))


def test_keep_passes_only_what_matches() -> None:
    f = EventFilter(FiltersConfig.model_validate({"keep": [{"kind": "Node"}]}))
    assert f.passes(occ("NodeNotReady", kind="Node"))
    assert not f.passes(occ("BackOff"))
