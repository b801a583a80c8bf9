"""Base classes for config models: strict keys, `*_file` variants for secrets, masking."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr, model_validator

from kube_event_watcher.config.secrets import registry


def _compile(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"expected a regular expression, got {value!r} ({exc})") from exc
    return value


Regex = Annotated[str, AfterValidator(_compile)]
"""A config field holding a regular expression, checked at load time."""


def read_secret_file(path: str) -> str:
    """The secret in `path`, without a trailing newline; errors name the file, not the secret."""
    expanded = Path(os.path.expanduser(path))
    try:
        text = expanded.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValueError(f"expected a readable file, but {path} does not exist") from exc
    except OSError as exc:
        raise ValueError(f"expected a readable file, but {path}: {exc.strerror}") from exc
    value = text.rstrip("\r\n")
    if not value:
        raise ValueError(f"expected a secret in {path}, but the file is empty")
    return value


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretsModel(StrictModel):
    """A model whose `SecretStr` fields may also be given as `<field>_file: PATH`."""

    secret_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.secret_fields = tuple(
            name
            for name, field in cls.model_fields.items()
            if field.annotation in (SecretStr, SecretStr | None)
        )

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in cls.secret_fields:
            file_key = f"{name}_file"
            if file_key not in data:
                continue
            path = data.pop(file_key)
            if name in data and data[name] is not None:
                raise ValueError(f"give either {name} or {file_key}, not both")
            if not isinstance(path, str):
                raise ValueError(f"{file_key}: expected a file path, got {path!r}")
            try:
                data[name] = read_secret_file(path)
            except ValueError as exc:
                raise ValueError(f"{file_key}: {exc}") from exc
        return data

    @model_validator(mode="after")
    def _register_secrets(self) -> SecretsModel:
        for name in self.secret_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                registry.register(value.get_secret_value())
        return self
