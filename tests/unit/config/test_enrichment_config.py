"""The enrichment: config section and the RBAC rules it implies."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from pydantic import ValidationError

from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.config.schema import Config


def test_defaults_give_a_working_enrichment() -> None:
    cfg = Config.model_validate({}).enrichment
    assert cfg.enabled
    assert (cfg.pods.ttl, cfg.pods.max_entries) == (60.0, 10_000)
    assert cfg.owners.ttl == 300.0
    assert cfg.nodes.ttl == 120.0
    assert cfg.negative_ttl == 10.0
    assert (cfg.log_tail.enabled, cfg.log_tail.lines, cfg.log_tail.max_bytes) == (False, 20, 4096)
    budget = cfg.api_budget
    assert (budget.qps, budget.burst, budget.deadline, budget.lookup_timeout) == (
        20.0,
        50,
        2.0,
        1.0,
    )


def test_durations_are_written_the_usual_way() -> None:
    cfg = EnrichmentConfig.model_validate(
        {"pods": {"ttl": "2m"}, "negative_ttl": "5s", "api_budget": {"deadline": "1500ms"}}
    )
    assert cfg.pods.ttl == 120.0
    assert cfg.pods.max_entries == 10_000
    assert cfg.negative_ttl == 5.0
    assert cfg.api_budget.deadline == 1.5


def test_a_lookup_timeout_longer_than_the_deadline_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError, match="lower lookup_timeout or raise deadline"):
        EnrichmentConfig.model_validate({"api_budget": {"deadline": "1s", "lookup_timeout": "3s"}})


def test_typos_are_errors() -> None:
    with pytest.raises(ValidationError, match="log_tails"):
        EnrichmentConfig.model_validate({"log_tails": {"enabled": True}})


def test_rbac_rules_follow_the_enabled_lookups() -> None:
    rules = EnrichmentConfig().rbac_rules()
    assert [(r.api_group, r.resources, r.verbs) for r in rules] == [
        ("", ("pods",), ("get",)),
        ("apps", ("replicasets",), ("get",)),
        ("batch", ("jobs",), ("get",)),
        ("", ("nodes",), ("get",)),
    ]
    with_logs = EnrichmentConfig.model_validate({"log_tail": {"enabled": True}}).rbac_rules()
    assert with_logs[-1].resources == ("pods/log",)
    assert EnrichmentConfig(enabled=False).rbac_rules() == []
    assert rules[0].yaml() == '- apiGroups: [""]\n  resources: [pods]\n  verbs: [get]'


def test_owner_groups_each_need_get_on_their_group() -> None:
    cfg = EnrichmentConfig.model_validate({"owner_groups": ["argoproj.io", "argoproj.io"]})
    assert cfg.owner_groups == ["argoproj.io"]  # listed twice, asked once
    assert cfg.rbac_rules()[-1].yaml() == (
        '- apiGroups: ["argoproj.io"]\n  resources: [*]\n  verbs: [get]'
    )


@pytest.mark.parametrize("group", ["", "argoproj.io/v1alpha1", "Argoproj.IO"])
def test_an_owner_group_that_is_not_an_api_group_is_refused_with_an_example(group: str) -> None:
    with pytest.raises(ValidationError, match=r"owner_groups\.0\n.*expected a DNS name"):
        EnrichmentConfig.model_validate({"owner_groups": [group]})


def test_the_example_config_loads() -> None:
    path = pathlib.Path(__file__).parents[3] / "config" / "enrichment.yaml"
    cfg = Config.model_validate(yaml.safe_load(path.read_text())).enrichment
    assert cfg.log_tail.enabled
    assert cfg.owners.ttl == 300.0
