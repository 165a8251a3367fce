"""Names of models and versions: validated once, so no caller can build a path from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# Letters, digits and '_' in runs joined by single '.' or '-': no '..' (a path), no '--'
# (the separator of Serve application names), nothing trailing.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_]*(?:[.-][a-z0-9_]+)*")
MAX_NAME_LENGTH = 64
APP_SEPARATOR = "--"
# "router" names a model's router application, so no version may take it.
RESERVED_VERSIONS = frozenset({"router"})
# A replay names its version; the router honours it only with the replay token.
REPLAY_TOKEN_HEADER = "x-trackside-replay-token"
REPLAY_VERSION_HEADER = "x-trackside-version"
REPLAY_OF_HEADER = "x-trackside-replay-of"  # the request id the replay reproduces
# Set in a Ray node's environment (`ray start`), read by the router replicas on that node:
# the host name their records carry, and the spool folder they write. Unset, a replica uses
# the machine's hostname and the folder in the router's config; several nodes on one machine
# (the local fleet, the tests) set them so each "host" has its own.
HOST_ENV = "TRACKSIDE_HOST"
SPOOL_ENV = "TRACKSIDE_SPOOL_DIR"


class InvalidName(ValueError):
    """A model or version name that does not match NAME_PATTERN."""


def check_name(kind: str, value: str) -> str:
    """Return `value` if it is a safe model/version name, else raise InvalidName."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidName(
            f"{kind} name {value!r} is not allowed: use lower-case letters, digits and '_',"
            " joined by single '.' or '-', starting with a letter or digit"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidName(f"{kind} name {value!r} is over {MAX_NAME_LENGTH} characters")
    return value


def check_version(value: str) -> str:
    check_name("version", value)
    if value in RESERVED_VERSIONS:
        raise InvalidName(f"version name {value!r} is reserved")
    return value


@dataclass(frozen=True)
class _NoneOf:
    """A JSON Schema `not: {enum: ...}`: the reserved names, said where clients read."""

    values: tuple[str, ...]

    def __get_pydantic_json_schema__(
        self, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core)
        schema["not"] = {"enum": list(self.values)}
        return schema


def _model(value: Any) -> Any:
    return check_name("model", value)


def _version(value: Any) -> Any:
    return check_version(value)


_SHAPE = StringConstraints(pattern=f"^{NAME_PATTERN.pattern}$", max_length=MAX_NAME_LENGTH)
# For request bodies and parameters: the check runs first (its message says what is allowed),
# the constraints put the same rule in the API's schema (listed first: after a validator,
# pydantic leaves the pattern out of the schema).
ModelName = Annotated[str, _SHAPE, BeforeValidator(_model)]
VersionName = Annotated[
    str, _SHAPE, BeforeValidator(_version), _NoneOf(tuple(sorted(RESERVED_VERSIONS)))
]


def app_name(model: str, version: str) -> str:
    """The Serve application name of one model version, e.g. `digits--v2`."""
    return f"{check_name('model', model)}{APP_SEPARATOR}{check_version(version)}"


def router_app_name(model: str) -> str:
    """The Serve application name of a model's router."""
    return f"{check_name('model', model)}{APP_SEPARATOR}router"


def split_app_name(name: str) -> tuple[str, str] | None:
    """Inverse of app_name / router_app_name; None for applications trackside does not own."""
    model, sep, version = name.partition(APP_SEPARATOR)
    if not sep or not NAME_PATTERN.fullmatch(model) or not NAME_PATTERN.fullmatch(version):
        return None
    return model, version
