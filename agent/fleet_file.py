"""The fleet file (`configs/fleet.toml`): the hosts of a fleet and how to reach each agent.
The console reaches them over SSH; the controller uses the same file to know its fleet."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agent.defaults import DEFAULT_PORT, TOKEN_FILE
from serve.config_file import ConfigError, read_toml, validated


class HostEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    address: str
    user: str | None = None  # default: ~/.ssh/config, then the local user
    ssh_port: int | None = None
    key: Path | None = None  # default: the SSH agent and ~/.ssh keys
    known_hosts: Path | None = None  # default: ~/.ssh/known_hosts
    agent_port: int = DEFAULT_PORT
    token: str | None = None  # default: read token_file on the host over SSH
    token_file: str = str(TOKEN_FILE)
    # The agent's address when it is reached directly (no SSH): the controller always reaches
    # agents this way (default http://ADDRESS:AGENT_PORT); the console only when it is set.
    url: str | None = None

    @property
    def agent_url(self) -> str:
        return self.url or f"http://{self.address}:{self.agent_port}"


class Fleet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[HostEntry] = Field(min_length=1)


def load_fleet(path: Path) -> Fleet:
    data = read_toml(path, "fleet file")
    defaults = data.pop("defaults", {})
    hosts = [{**defaults, **h} for h in data.get("hosts", [])]
    fleet = validated(Fleet, {"hosts": hosts}, str(path))
    names = [h.name for h in fleet.hosts]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: host names must be unique: {names}")
    return fleet
