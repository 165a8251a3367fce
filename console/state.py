"""The console's data: the latest snapshot of every host, and a filter. Screens read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.client import ModelStatus
from console.poller import HostSnapshot


@dataclass
class ConsoleState:
    hosts: dict[str, HostSnapshot] = field(default_factory=dict)
    filter: str = ""
    readonly: bool = False

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
