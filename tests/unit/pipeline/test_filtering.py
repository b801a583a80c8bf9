from __future__ import annotations

import pytest

from kube_event_watcher.config.schema import FiltersConfig
from kube_event_watcher.pipeline import filtering
from kube_event_watcher.pipeline.filtering import EventFilter
from kube_event_watcher.pipeline.model import Occurrence
from tests.factories import occurrence


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


def test_keep_and_drop_together_and_the_remembered_decisions_follow_every_field() -> None:
    f = EventFilter(
        FiltersConfig.model_validate(
            {"keep": [{"namespace": "shop|pay"}], "drop": [{"reason": "Pulled", "kind": "Pod"}]}
        )
    )
    for _ in range(2):  # the second round answers from the remembered decisions
        assert f.passes(occ("BackOff"))
        assert not f.passes(occ("Pulled"))
        assert f.passes(occ("Pulled", kind="Node"))
        assert not f.passes(occ("BackOff", namespace="web"))
        assert f.passes(occ("BackOff", namespace="pay"))


def test_rules_on_high_cardinality_fields_are_evaluated_every_time() -> None:
    f = EventFilter(FiltersConfig.model_validate({"drop": [{"note": ".*probe.*"}]}))
    notes = [f"readiness probe failed #{i}" for i in range(3)] + ["image pulled"]
    results = [f.passes(occurrence("web-0", reason="Unhealthy", note=n)) for n in notes]
    assert results == [False, False, False, True]


def test_the_remembered_decisions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filtering, "MEMO_SIZE", 4)
    f = EventFilter(FiltersConfig.model_validate({"drop": [{"reason": "R1.*"}]}))
    for i in range(20):  # more distinct reasons than the memo holds: answers stay right
        assert f.passes(occ(f"R{i}")) == (not f"R{i}".startswith("R1"))


def test_no_rules_pass_everything() -> None:
    assert EventFilter(FiltersConfig()).passes(occ("Anything"))
