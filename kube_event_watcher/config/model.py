"""Base classes for config models: strict keys, `*_file` variants for secrets, masking."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

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


SECRET_FILE_ERROR = "secret_file"
"""The pydantic error type of a `<field>_file` key that could not be used."""
_STAND_IN = "-"


def _file_problem(file_key: str, message: str, path: object) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(SECRET_FILE_ERROR, message),
        loc=(file_key,),
        input=path,
    )


def _reraised(error: ErrorDetails) -> InitErrorDetails:
    """A pydantic error raised again as it was (its type and message kept)."""
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], error["msg"]),
        loc=error["loc"],
        input=error["input"],
    )


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

    @model_validator(mode="wrap")
    @classmethod
    def _read_secret_files(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """Read each `<field>_file`, and validate the other keys in the same pass: a file
        that cannot be read is reported at its own key (`secret_file`) together with every
        other problem of the model, not alone in a first round."""
        if not isinstance(data, dict) or not any(f"{n}_file" in data for n in cls.secret_fields):
            return handler(data)
        data = dict(data)
        unread: list[InitErrorDetails] = []
        for name in cls.secret_fields:
            file_key = f"{name}_file"
            if file_key not in data:
                continue
            path = data.pop(file_key)
            try:
                if name in data and data[name] is not None:
                    raise ValueError(f"give either {name} or {file_key}, not both")
                if not isinstance(path, str):
                    raise ValueError(f"expected a file path, got {type(path).__name__}")
                data[name] = read_secret_file(path)
            except ValueError as exc:
                unread.append(_file_problem(file_key, str(exc), path))
                # A stand-in (too short to be registered as a secret) so that the other keys
                # are checked; what the checks of this field say about it is dropped below.
                # (The model's own after-validators do not run once a file failed.)
                data[name] = _STAND_IN
        if not unread:
            return handler(data)
        failed = {str(e["loc"][0]) for e in unread}
        found: list[InitErrorDetails] = list(unread)
        try:
            handler(data)
        except ValidationError as exc:
            found += [
                _reraised(e)
                for e in exc.errors(include_url=False)
                if not (e["loc"] and f"{e['loc'][0]}_file" in failed)
            ]
        raise ValidationError.from_exception_data(cls.__name__, found)

    @model_validator(mode="after")
    def _register_secrets(self) -> SecretsModel:
        for name in self.secret_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                registry.register(value.get_secret_value())
        return self
