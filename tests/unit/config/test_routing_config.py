"""The routing and ops sections as an operator writes them: the example loads, and mistakes
name their key path and the next step."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import load_config, parse_config
from kube_event_watcher.config.ops import parse_listen
from kube_event_watcher.notifiers.registry import config_models

EXAMPLE = Path(__file__).parents[3] / "config" / "routing.yaml"


def test_example_config_loads() -> None:
    loaded = load_config(str(EXAMPLE), config_models())
    assert loaded.config.routes is not None
    assert loaded.config.routes.routes[0].continue_ is True
    assert loaded.config.ops.self_alert_receiver == "oncall"
    assert loaded.config.silences[1].weekly[0].days == [5, 6]


def problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "test.yaml", config_models())
    return info.value.problems


def test_unknown_receivers_are_named_with_their_key_path() -> None:
    assert problems(
        {
            "routes": {
                "receiver": "stdout",
                "routes": [{"receiver": "stdout"}, {"routes": [{"receiver": "x"}]}],
            },
            "ops": {"self_alert_receiver": "pager"},
        }
    ) == [
        "routes.routes[1].routes[0].receiver: no receiver named 'x' (known: stdout)",
        "ops.self_alert_receiver: no receiver named 'pager' (known: stdout)",
    ]


def test_root_route_needs_a_default_receiver() -> None:
    assert problems({"routes": {"routes": [{"receiver": "stdout"}]}}) == [
        "routes.receiver: the root route needs a default receiver (known: stdout)"
    ]


def test_stale_after_must_exceed_the_watch_renewal() -> None:
    [problem] = problems({"ops": {"stale_after": "4m"}})
    assert problem.startswith("ops.stale_after: 4m is not longer than sources[0].watch_timeout")


def test_bad_matchers_point_at_the_item() -> None:
    found = problems(
        {"routes": {"receiver": "stdout", "routes": [{"matchers": ['kind="Pod"', "x", "ns=a"]}]}}
    )
    assert [p.split(": ")[0] for p in found] == [
        "routes.routes[0].matchers[1]",
        "routes.routes[0].matchers[2]",
    ]
    assert "unknown field 'ns'" in found[1]


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:9464", "127.0.0.1", 9464), (":9464", "0.0.0.0", 9464), ("[::1]:0", "::1", 0)],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    address = parse_listen(text)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize("text", ["9464", "localhost:http", "::1:9464", "1.2.3.4:70000"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|brackets"):
        parse_listen(text)
