"""The route tree: which receivers an alert reaches, in Alertmanager's manner."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kube_event_watcher.config.routing import RouteConfig, parse_matcher
from kube_event_watcher.pipeline.route import FieldMatcher, Router
from tests.factories import make_alert

RECEIVERS = ["oncall", "payments", "archive", "nodes", "team-a"]


def router(tree: dict[str, Any]) -> Router:
    return Router(RouteConfig.model_validate(tree), RECEIVERS)


def test_without_routes_every_receiver_gets_every_alert() -> None:
    assert Router(None, RECEIVERS).receivers(make_alert()) == tuple(RECEIVERS)


def test_root_receiver_is_the_default_when_no_child_matches() -> None:
    tree = router(
        {
            "receiver": "oncall",
            "routes": [{"matchers": ['namespace="payments"'], "receiver": "payments"}],
        }
    )
    assert tree.receivers(make_alert(namespace="web")) == ("oncall",)
    assert tree.receivers(make_alert(namespace="payments")) == ("payments",)


def test_first_matching_child_stops_unless_continue() -> None:
    tree = router(
        {
            "receiver": "oncall",
            "routes": [
                {"match": {"namespace": "payments-.*"}, "receiver": "payments", "continue": True},
                {"matchers": ['type="Warning"'], "receiver": "archive"},
                {"matchers": ['kind="Pod"'], "receiver": "team-a"},
            ],
        }
    )
    # continue: payments, then archive, which stops before team-a
    assert tree.receivers(make_alert(namespace="payments-eu")) == ("payments", "archive")
    assert tree.receivers(make_alert(namespace="web")) == ("archive",)


def test_nested_routes_inherit_the_receiver_and_deepest_match_wins() -> None:
    tree = router(
        {
            "receiver": "oncall",
            "routes": [
                {
                    "matchers": ['cluster="prod"'],
                    "receiver": "payments",
                    "routes": [
                        {"matchers": ['kind="Node"'], "receiver": "nodes"},
                        {"matchers": ['reason="OOMKilling"']},  # inherits payments
                    ],
                }
            ],
        }
    )
    assert tree.receivers(make_alert(kind="Node", name="n1")) == ("nodes",)
    assert tree.receivers(make_alert(reason="OOMKilling")) == ("payments",)
    assert tree.receivers(make_alert(reason="BackOff")) == ("payments",)
    assert tree.receivers(make_alert(cluster="staging")) == ("oncall",)


def test_receivers_are_deduplicated_in_first_match_order() -> None:
    tree = router(
        {
            "receiver": "oncall",
            "routes": [
                {"matchers": ['kind="Pod"'], "receiver": "archive", "continue": True},
                {"matchers": ['type="Warning"'], "receiver": "payments", "continue": True},
                {"matchers": ['reason="BackOff"'], "receiver": "archive"},
            ],
        }
    )
    assert tree.receivers(make_alert()) == ("archive", "payments")


@pytest.mark.parametrize(
    ("matcher", "namespace", "expected"),
    [
        ('namespace="payments"', "payments", True),
        ('namespace="payments"', "payments-eu", False),
        ('namespace!="payments"', "payments-eu", True),
        ('namespace=~"payments-.*"', "payments-eu", True),
        ('namespace=~"payments"', "payments-eu", False),  # regexes match the whole value
        ('namespace!~"payments-.*"', "payments-eu", False),
        ('namespace!~"payments-.*"', "web", True),
        ("namespace=payments", "payments", True),  # quotes are optional
        ('namespace=~"a.b"', "a.b", True),
    ],
)
def test_matcher_operators(matcher: str, namespace: str, expected: bool) -> None:
    assert (
        FieldMatcher.compile(parse_matcher(matcher)).matches(make_alert(namespace=namespace))
        is expected
    )


def test_labels_and_facts_are_matchable() -> None:
    tree = router(
        {
            "receiver": "oncall",
            "routes": [
                {"matchers": ['labels.app.kubernetes.io/part-of="shop"'], "receiver": "payments"},
                {"matchers": ['facts.node=~"gpu-.*"'], "receiver": "nodes"},
                {"match": {"facts.workload.kind": "StatefulSet"}, "receiver": "team-a"},
            ],
        }
    )
    assert tree.receivers(make_alert(labels={"app.kubernetes.io/part-of": "shop"})) == ("payments",)
    assert tree.receivers(make_alert(facts={"node": "gpu-7"})) == ("nodes",)
    assert tree.receivers(
        make_alert(facts={"workload": {"kind": "StatefulSet", "name": "db"}})
    ) == ("team-a",)
    assert tree.receivers(make_alert(facts={"workload": "not-a-mapping"})) == ("oncall",)


def test_missing_label_reads_as_empty_so_negation_matches() -> None:
    matcher = FieldMatcher.compile(parse_matcher('labels.team!="pay"'))
    assert matcher.matches(make_alert())
    assert not matcher.matches(make_alert(labels={"team": "pay"}))
    restarts = FieldMatcher.compile(parse_matcher('facts.restarts=~"[0-9]+"'))
    assert restarts.matches(make_alert(facts={"restarts": 12}))
    assert not restarts.matches(make_alert(facts={}))


def test_quoted_values_keep_escapes_and_specials() -> None:
    spec = parse_matcher(r'note=~"Back-off \"x\", retry.*"')
    assert spec.value == 'Back-off "x", retry.*'
    assert str(spec) == r'note=~"Back-off \"x\", retry.*"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("namespace", "expected one of = != =~ !~"),
        ('namespace=~"("', "not a valid regular expression"),
        ("owner=x", "unknown field 'owner'"),
        ('namespace="a', "unbalanced quotes"),
        ("=x", "expected a matcher like"),
    ],
)
def test_bad_matchers_are_explained(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_matcher(text)


def test_route_keys_are_strict() -> None:
    with pytest.raises(ValidationError, match="continu"):
        RouteConfig.model_validate({"receiver": "x", "continu": True})


@given(
    namespace=st.sampled_from(["payments", "payments-eu", "web", ""]),
    kind=st.sampled_from(["Pod", "Node", "Deployment"]),
    team=st.sampled_from([None, "pay", "web"]),
)
def test_result_is_never_empty_and_never_repeats(
    namespace: str, kind: str, team: str | None
) -> None:
    tree = router(
        {
            "receiver": "oncall",
            "routes": [
                {"matchers": ['namespace=~"payments.*"'], "receiver": "payments", "continue": True},
                {"matchers": ['labels.team="pay"'], "receiver": "payments", "continue": True},
                {"matchers": ['kind!="Pod"'], "receiver": "nodes"},
            ],
        }
    )
    alert = make_alert(namespace=namespace, kind=kind, labels={"team": team} if team else {})
    receivers = tree.receivers(alert)
    assert receivers
    assert len(set(receivers)) == len(receivers)
    assert set(receivers) <= set(RECEIVERS)
