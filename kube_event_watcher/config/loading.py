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
from kube_event_watcher.config.schema import Config
from kube_event_watcher.config.secrets import registry

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config, each receiver's own settings validated by its notifier's model."""

    config: Config
    source: str
    receivers: dict[str, BaseModel] = field(default_factory=dict)


def _interpolate(node: Any, loc: tuple[int | str, ...], env: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, (*loc, str(k)), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*loc, i), env) for i, v in enumerate(node)]
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
                raise ConfigError(
                    "",
                    [
                        f"{key_path(loc)}: environment variable {name} is not set "
                        f"(set it, or write ${{{name}:-default}})"
                    ],
                )
            value = default
        if secret:
            registry.register(value)
        return value

    return _ENV_REF.sub(substitute, node)


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
    try:
        data = _interpolate(raw, (), os.environ if env is None else env)
    except ConfigError as exc:
        raise ConfigError(source, exc.problems) from None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_from(exc)) from None

    problems: list[str] = []
    receivers: dict[str, BaseModel] = {}
    for i, entry in enumerate(config.receivers):
        model = receiver_models.get(entry.type)
        if model is None:
            known = ", ".join(sorted(receiver_models))
            problems.append(f"receivers[{i}].type: unknown type {entry.type!r} (known: {known})")
            continue
        try:
            receivers[entry.name] = model.model_validate(entry.model_dump())
        except ValidationError as exc:
            problems.extend(problems_from(exc, prefix=f"receivers[{i}]"))
    if problems:
        raise ConfigError(source, problems)
    return LoadedConfig(config=config, source=source, receivers=receivers)


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
