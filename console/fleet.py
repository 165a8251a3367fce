"""The fleet file (`configs/fleet.toml`): the hosts the console reaches over SSH."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class FleetError(ValueError):
    pass


class HostEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    address: str
    user: str | None = None  # default: ~/.ssh/config, then the local user
    ssh_port: int | None = None
    key: Path | None = None  # default: the SSH agent and ~/.ssh keys
    known_hosts: Path | None = None  # default: ~/.ssh/known_hosts
    agent_port: int = 7070
    token: str | None = None  # default: read token_file on the host over SSH
    token_file: str = ".trackside/agent.token"


class Fleet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[HostEntry] = Field(min_length=1)


def load_fleet(path: Path) -> Fleet:
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise FleetError(f"fleet file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"{path}: not valid TOML: {exc}") from exc
    defaults = data.pop("defaults", {})
    hosts = [{**defaults, **h} for h in data.get("hosts", [])]
    try:
        fleet = Fleet.model_validate({"hosts": hosts})
    except ValidationError as exc:
        raise FleetError(f"{path}: {exc}") from exc
    names = [h.name for h in fleet.hosts]
    if len(set(names)) != len(names):
        raise FleetError(f"{path}: host names must be unique: {names}")
    return fleet
