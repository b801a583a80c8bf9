from __future__ import annotations

import re
from pathlib import Path

import pytest

from kube_event_watcher.cli import effective_config
from kube_event_watcher.config.durations import format_duration, parse_duration
from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import load_config, parse_config
from kube_event_watcher.config.secrets import MASK, mask_url, redact
from kube_event_watcher.notifiers.registry import config_models


def parse(raw: object, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse_config(raw, "test.yaml", config_models(), env=env or {})


def problems(raw: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(raw, env)
    return info.value.problems


def test_empty_config_is_the_working_default() -> None:
    loaded = parse({})
    assert loaded.config.sources[0].field_selector == "type=Warning"
    assert [r.name for r in loaded.config.receivers] == ["stdout"]
    assert loaded.config.state.backend == "file"


def test_an_error_names_the_key_what_was_found_and_what_is_expected() -> None:
    assert problems({"sources": [{"namespaces": "default"}]}) == [
        "sources[0].namespaces: expected a list of names, got 'default'"
    ]


def test_several_problems_are_all_reported() -> None:
    found = problems({"sources": [{"startup_max_age": "soon", "page_size": 0}], "colour": 1})
    assert any(p.startswith("sources[0].startup_max_age: expected a duration") for p in found)
    assert any(p.startswith("sources[0].page_size:") for p in found)
    assert "colour: is not a known key (check the spelling)" in found


def test_unknown_receiver_type_lists_the_known_ones() -> None:
    (problem,) = problems({"receivers": [{"name": "x", "type": "pager"}]})
    assert problem.startswith("receivers[0].type: unknown type 'pager' (known: ")
    assert "file" in problem and "stdout" in problem


def test_receiver_keys_are_validated_by_the_notifier_model() -> None:
    assert problems({"receivers": [{"name": "f", "type": "file"}]}) == [
        "receivers[0].path: is required"
    ]


def test_source_naming_an_unknown_cluster_is_an_error() -> None:
    (problem,) = problems({"clusters": [{"name": "a"}], "sources": [{"cluster": "b"}]})
    assert "sources[0].cluster: no cluster named 'b' (known: a)" in problem


def test_env_interpolation_and_missing_variables() -> None:
    loaded = parse(
        {"receivers": [{"name": "f", "type": "file", "path": "${DIR}/a.jsonl"}]}, {"DIR": "/x"}
    )
    assert loaded.receivers["f"].path == "/x/a.jsonl"  # type: ignore[attr-defined]
    (problem,) = problems({"receivers": [{"name": "f", "type": "file", "path": "${NOPE}"}]})
    assert problem.startswith("receivers[0].path: environment variable NOPE is not set")
    loaded = parse({"receivers": [{"name": "f", "type": "file", "path": "${NOPE:-/d}/b"}]})
    assert loaded.receivers["f"].path == "/d/b"  # type: ignore[attr-defined]


def test_yaml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sources:\n  - namespaces: [a\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), config_models())
    assert "line 3" in info.value.problems[0] or "line 2" in info.value.problems[0]


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(str(tmp_path / "none.yaml"), config_models())


def test_check_config_output_never_contains_secrets() -> None:
    from pydantic import SecretStr

    from kube_event_watcher.notifiers.base import ReceiverConfig

    class Hooked(ReceiverConfig):
        url: SecretStr

    models = {**config_models(), "hooked": Hooked}
    env = {"HOOK_TOKEN": "s3cr3t-t0ken-value"}
    loaded = parse_config(
        {
            "receivers": [
                {"name": "h", "type": "hooked", "url": "https://hooks.example/x?t=${HOOK_TOKEN}"}
            ]
        },
        "t",
        models,
        env=env,
    )
    shown = str(effective_config(loaded))
    assert "s3cr3t-t0ken-value" not in shown
    assert "https://hooks.example/" + MASK in shown
    assert redact("failed: https://hooks.example/x?t=s3cr3t-t0ken-value") == f"failed: {MASK}"


def test_secret_file_variant(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from kube_event_watcher.notifiers.base import ReceiverConfig

    class Signed(ReceiverConfig):
        secret: SecretStr

    secret_file = tmp_path / "s"
    secret_file.write_text("SEC-from-a-file\n")
    models = {"signed": Signed}
    loaded = parse_config(
        {"receivers": [{"name": "s", "type": "signed", "secret_file": str(secret_file)}]},
        "t",
        models,
        {},
    )
    assert loaded.receivers["s"].secret.get_secret_value() == "SEC-from-a-file"  # type: ignore[attr-defined]
    assert redact("x SEC-from-a-file y") == f"x {MASK} y"
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"receivers": [{"name": "s", "type": "signed", "secret_file": str(tmp_path / "none")}]},
            "t",
            models,
            {},
        )
    assert "secret_file" in info.value.problems[0] and "does not exist" in info.value.problems[0]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("4h", 14400), ("1h30m", 5400), ("250ms", 0.25), (12, 12)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "m5", "", "-3s", -1, True])
def test_bad_durations_say_what_is_expected(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


def test_mask_url_keeps_only_scheme_and_host() -> None:
    assert mask_url("https://oapi.dingtalk.com/robot/send?access_token=abc") == (
        f"https://oapi.dingtalk.com/{MASK}"
    )
    assert mask_url("not a url") == MASK


def test_every_problem_of_a_file_comes_in_one_pass_each_with_its_full_key_path(
    tmp_path: Path,
) -> None:
    found = problems(
        {
            "sources": [{"startup_max_age": "soon"}],
            "receivers": [
                {"name": "console", "type": "stdout"},
                {"name": "archive", "type": "file", "path": "${ARCHIVE_DIR}/a.jsonl"},
                {
                    "name": "oncall",
                    "type": "dingtalk",
                    "url": "https://oapi.dingtalk.com/robot/send?access_token=t0ken-t0ken-t0ken",
                    "secret_file": str(tmp_path / "dingtalk.secret"),
                    "colour": "red",
                },
                {"name": "team", "type": "slack", "url_file": str(tmp_path / "slack.url")},
            ],
        }
    )
    assert found == [
        "receivers[1].path: environment variable ARCHIVE_DIR is not set "
        "(set it, or write ${ARCHIVE_DIR:-default})",
        "sources[0].startup_max_age: expected a duration like '90s', '5m' or '4h', got 'soon'",
        f"receivers[2].secret_file: expected a readable file, but {tmp_path}/dingtalk.secret "
        "does not exist",
        "receivers[2].colour: is not a known key (check the spelling)",
        f"receivers[3].url_file: expected a readable file, but {tmp_path}/slack.url does not exist",
    ]


def test_a_file_key_error_in_a_nested_mapping_names_its_path_and_never_the_secret(
    tmp_path: Path,
) -> None:
    (tmp_path / "password").write_text("from-the-file-pw\n")
    receiver = {
        "name": "am",
        "type": "alertmanager",
        "url": "http://127.0.0.1:9093",
        "basic_auth": {
            "username": "kew",
            "password": "inline-hunter2-pw",
            "password_file": str(tmp_path / "password"),
        },
    }
    with pytest.raises(ConfigError) as info:
        parse({"receivers": [receiver]})
    assert info.value.problems == [
        "receivers[0].basic_auth.password_file: give either password or password_file, not both"
    ]
    assert "hunter2" not in str(info.value) and "from-the-file" not in str(info.value)


def test_an_empty_secret_file_is_named_with_its_key(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("\n")
    receiver = {"name": "pd", "type": "pagerduty", "routing_key_file": str(tmp_path / "key")}
    assert problems({"receivers": [{"name": "console", "type": "stdout"}, receiver]}) == [
        f"receivers[1].routing_key_file: expected a secret in {tmp_path}/key, but the file is empty"
    ]


def test_a_check_of_a_whole_receiver_names_the_receiver() -> None:
    receiver = {
        "name": "mail",
        "type": "email",
        "host": "smtp.example.com",
        "sender": "kew@example.com",
        "to": ["ops@example.com"],
        "username": "kew",
    }
    assert problems({"receivers": [receiver]}) == [
        "receivers[0]: give both username and password (or password_file), or neither"
    ]


def test_check_config_prints_durations_as_written_and_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kube_event_watcher.cli import main

    (tmp_path / "dingtalk.secret").write_text("SEC-signing-secret-0123456789\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "aggregation:\n  group: {wait: 45s, interval: 1h30m}\n"
        "receivers:\n"
        "  - name: oncall\n    type: dingtalk\n"
        "    url: https://oapi.dingtalk.com/robot/send?access_token=t0ken-t0ken-t0ken-t0ken\n"
        f"    secret_file: {tmp_path / 'dingtalk.secret'}\n"
        "    delivery: {send_timeout: 100ms, retry_max: 5m}\n"
    )
    assert main(["check-config", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    for line in ("wait: 45s", "interval: 1h30m", "send_timeout: 100ms", "retry_max: 5m"):
        assert f" {line}\n" in out
    assert "breaker_cooldown: 30s\n" in out  # a default, written the same way
    # The only number with a point left is a rate, not a duration.
    assert re.findall(r"^ *(\w+): \d+\.\d+$", out, re.MULTILINE) == ["update_factor", "qps"]
    assert "url: https://oapi.dingtalk.com/****" in out and "secret: '****'" in out
    assert "t0ken" not in out and "SEC-signing" not in out


def test_checks_across_keys_name_the_keys_and_write_durations_as_operators_do() -> None:
    assert problems({"aggregation": {"group": {"interval": "5m", "repeat": "1m"}}}) == [
        "aggregation.group.repeat (1m) must not be shorter than group.interval (5m)"
    ]
    (problem,) = problems({"enrichment": {"api_budget": {"lookup_timeout": "2500ms"}}})
    assert problem.startswith(
        "enrichment.api_budget.lookup_timeout (2s500ms) is longer than api_budget.deadline (2s)"
    )
    (problem,) = problems(
        {"ha": {"enabled": True, "renew_deadline": "20s"}, "state": {"backend": "configmap"}}
    )
    assert problem.startswith("ha.renew_deadline (20s) must be shorter than lease_duration (15s)")


def test_a_secret_file_that_cannot_be_read_is_one_problem_not_a_cascade(tmp_path: Path) -> None:
    from typing import Self

    from pydantic import SecretStr, model_validator

    from kube_event_watcher.notifiers.base import ReceiverConfig

    class Checked(ReceiverConfig):
        url: SecretStr
        retries: int = 0

        @model_validator(mode="after")
        def _url_is_https(self) -> Self:
            if not self.url.get_secret_value().startswith("https://"):
                raise ValueError("url: expected an https:// URL")
            return self

    entry = {"name": "c", "type": "checked", "url_file": str(tmp_path / "none"), "retries": "x"}
    with pytest.raises(ConfigError) as info:
        parse_config({"receivers": [entry]}, "t", {"checked": Checked}, {})
    assert info.value.problems == [
        f"receivers[0].url_file: expected a readable file, but {tmp_path}/none does not exist",
        "receivers[0].retries: expected a whole number, got 'x'",
    ]
    del entry["retries"]  # every key valid: the model's own checks run, on a stand-in url
    with pytest.raises(ConfigError) as info:
        parse_config({"receivers": [entry]}, "t", {"checked": Checked}, {})
    assert info.value.problems == [
        f"receivers[0].url_file: expected a readable file, but {tmp_path}/none does not exist"
    ]
