"""Reading a config file: YAML, `${ENV}` interpolation, validation with errors per key path."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kube_event_watcher.config.errors import SECRET_KEY_WORDS, ConfigError, key_path, problems_from
from kube_event_watcher.config.schema import Config, ReceiverEntry
from kube_event_watcher.config.secrets import registry

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config, each receiver's own settings validated by its notifier's model."""

    config: Config
    source: str
    receivers: dict[str, BaseModel] = field(default_factory=dict)
    fleet_stream: BaseModel | None = None  # fleet.consume, as its receiver type's model


def _interpolate(
    node: Any, loc: tuple[int | str, ...], env: Mapping[str, str], problems: list[str]
) -> Any:
    """`node` with `${VAR}` replaced; an unset variable is added to `problems`."""
    if isinstance(node, dict):
        return {k: _interpolate(v, (*loc, str(k)), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*loc, i), env, problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node
    last_key = next((p for p in reversed(loc) if isinstance(p, str)), "")
    secret = any(w in last_key.lower() for w in SECRET_KEY_WORDS)

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None:
            if default is None:
                problems.append(
                    f"{key_path(loc)}: environment variable {name} is not set "
                    f"(set it, or write ${{{name}:-default}})"
                )
                return ""
            value = default
        if secret:
            registry.register(value)
        return value

    return _ENV_REF.sub(substitute, node)


def _without_follow_ons(problems: list[str]) -> list[str]:
    """Each problem once, and none about a value left empty by an unset variable (its key
    already has the problem that says why)."""
    unset = {p.partition(": ")[0] for p in problems if ": environment variable " in p}
    out: list[str] = []
    for problem in problems:
        key, _, what = problem.partition(": ")
        if problem in out or (key in unset and not what.startswith("environment variable")):
            continue
        out.append(problem)
    return out


def parse_config(
    raw: Any,
    source: str,
    receiver_models: Mapping[str, type[BaseModel]],
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Validate a parsed YAML document; raises ConfigError listing every problem found."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            source, [f"(top level): expected a mapping of keys, got {type(raw).__name__}"]
        )
    problems: list[str] = []
    data = _interpolate(raw, (), os.environ if env is None else env, problems)
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(exc))
    # Each receiver is validated by its notifier's model even when other sections have
    # problems, so that every problem of the file is reported in one pass.
    entries = data.get("receivers") if config is None else config.receivers
    receivers: dict[str, BaseModel] = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        fields = entry.model_dump() if isinstance(entry, ReceiverEntry) else entry
        if not isinstance(fields, dict) or not isinstance(fields.get("type"), str):
            continue  # reported by the schema: receivers[i].type is required
        model = receiver_models.get(fields["type"])
        if model is None:
            known = ", ".join(sorted(receiver_models))
            problems.append(
                f"receivers[{i}].type: unknown type {fields['type']!r} (known: {known})"
            )
            continue
        try:
            receivers[str(fields.get("name"))] = model.model_validate(fields)
        except ValidationError as exc:
            problems.extend(problems_from(exc, prefix=f"receivers[{i}]"))
    fleet_stream = _fleet_stream(data, config, receiver_models, problems)
    if problems or config is None:
        raise ConfigError(source, _without_follow_ons(problems))
    return LoadedConfig(
        config=config, source=source, receivers=receivers, fleet_stream=fleet_stream
    )


def _fleet_stream(
    data: Any,
    config: Config | None,
    receiver_models: Mapping[str, type[BaseModel]],
    problems: list[str],
) -> BaseModel | None:
    """`fleet.consume` validated by the model of the receiver type it names: the central
    instance reads the stream with the same keys the edges' receiver publishes with."""
    if config is not None:
        if config.fleet is None:
            return None
        fields: Any = config.fleet.consume.model_dump()
    else:
        fleet = data.get("fleet") if isinstance(data, dict) else None
        fields = fleet.get("consume") if isinstance(fleet, dict) else None
        if not isinstance(fields, dict):
            return None  # reported by the schema
    model = receiver_models.get(str(fields.get("type")))
    if model is None:
        return None  # reported by the schema: type is kafka or nats
    try:
        return model.model_validate({"name": "fleet", **fields})
    except ValidationError as exc:
        problems.extend(problems_from(exc, prefix="fleet.consume"))
        return None


def load_config(
    path: str | None,
    receiver_models: Mapping[str, type[BaseModel]],
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Load `path`, or the built-in default config when `path` is None."""
    if path is None:
        return parse_config({}, "(built-in default)", receiver_models, env)
    file = Path(os.path.expanduser(path))
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [f"{where}not valid YAML ({problem})"]) from None
    return parse_config(raw, path, receiver_models, env)
