"""TOML config files, read one way: Python's own tomllib, then one typed model, with an error
that names the file and the setting. Every config of trackside (agent, models, fleet) is read
here; no Ray import, so the agent and the console (through the client) use it too."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the setting."""


def read_toml(path: Path | str, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def validated(kind: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_toml(path: Path | str, kind: type[M], what: str) -> M:
    """The file at `path` as a `kind` (a pydantic model)."""
    return validated(kind, read_toml(path, what), str(path))
