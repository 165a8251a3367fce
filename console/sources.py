"""Where a host's agent is reached from: directly on localhost, or through an SSH tunnel."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Protocol

from agent.client import AsyncAgentClient, HostEntry, read_token
from console.ssh import Tunnel, open_tunnel


class HostSource(Protocol):
    name: str
    address: str

    @property
    def client(self) -> AsyncAgentClient | None:
        """The client while connected, else None."""

    async def connect(self) -> AsyncAgentClient: ...

    async def close(self) -> None: ...


class LocalSource:
    """An agent on this machine (the demo): URL and token file."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        token_file: Path | None = None,
        name: str = "localhost",
    ) -> None:
        self.name = name
        self.address = url
        self.url = url
        self.token = token
        self.token_file = token_file
        self._client: AsyncAgentClient | None = None

    @property
    def client(self) -> AsyncAgentClient | None:
        return self._client

    async def connect(self) -> AsyncAgentClient:
        await self.close()
        token = read_token(self.token, self.token_file)
        self._client = AsyncAgentClient(self.url, token=token, user=getpass.getuser(), timeout_s=10)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class SshSource:
    """An agent on a fleet host, through an asyncssh tunnel to its 127.0.0.1 port."""

    def __init__(self, entry: HostEntry) -> None:
        self.entry = entry
        self.name = entry.name
        self.address = entry.address
        self._tunnel: Tunnel | None = None
        self._client: AsyncAgentClient | None = None

    @property
    def client(self) -> AsyncAgentClient | None:
        return self._client

    async def connect(self) -> AsyncAgentClient:
        await self.close()
        self._tunnel = await open_tunnel(self.entry)
        user = self.entry.user or getpass.getuser()
        self._client = AsyncAgentClient(
            self._tunnel.url, token=self._tunnel.token, user=user, timeout_s=10
        )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._tunnel is not None:
            await self._tunnel.close()
            self._tunnel = None
