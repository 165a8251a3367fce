"""The console's data, handed down to every screen: the latest snapshot of every host, where
each is reached from, and whether the operator may change anything."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.client import AlertsPage, AsyncAgentClient, ModelStatus
from console.poller import HostSnapshot
from console.sources import HostSource


@dataclass
class ConsoleState:
    sources: list[HostSource] = field(default_factory=list)
    hosts: dict[str, HostSnapshot] = field(default_factory=dict)
    readonly: bool = False

    def __post_init__(self) -> None:
        for source in self.sources:
            self.hosts.setdefault(
                source.name, HostSnapshot(name=source.name, address=source.address)
            )

    def controller(self) -> HostSnapshot | None:
        for snap in self.hosts.values():
            if snap.info is not None and snap.info.role == "controller" and snap.connected:
                return snap
        return None

    def offers(self, path: str) -> bool:
        """Whether the controller agent's API has `path` (features arrive with upgrades)."""
        ctl = self.controller()
        return bool(ctl and ctl.offers(path))

    def models(self) -> list[ModelStatus]:
        ctl = self.controller()
        return list(ctl.models or []) if ctl else []

    def alerts(self) -> AlertsPage | None:
        ctl = self.controller()
        return ctl.alerts if ctl else None

    def model(self, name: str) -> ModelStatus | None:
        return next((m for m in self.models() if m.model == name), None)

    def client(self, host: str) -> AsyncAgentClient | None:
        """The connected client of one host (None while it is down)."""
        source = next((s for s in self.sources if s.name == host), None)
        return source.client if source is not None else None

    def controller_client(self) -> AsyncAgentClient | None:
        ctl = self.controller()
        return self.client(ctl.name) if ctl else None

    def clients(self) -> list[tuple[str, AsyncAgentClient]]:
        return [(s.name, s.client) for s in self.sources if s.client is not None]
