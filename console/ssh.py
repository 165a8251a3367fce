"""SSH tunnels to agents (asyncssh): a local port forwarded to the agent's 127.0.0.1 port.

Host keys are always checked against known_hosts; an unknown or changed key is refused with
a message that says what to do. Keys come from the SSH agent or ~/.ssh, and ~/.ssh/config is
honoured (user, port, identity files), as with `ssh`.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from agent.client import HostEntry


class TunnelError(Exception):
    """The host could not be reached or was refused; the message says why and what to do."""


@dataclass
class Tunnel:
    entry: HostEntry
    conn: asyncssh.SSHClientConnection
    listener: asyncssh.SSHListener
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.get_port()}"

    async def close(self) -> None:
        self.listener.close()
        self.conn.close()
        await self.conn.wait_closed()


def _ssh_config() -> list[str]:
    path = Path("~/.ssh/config").expanduser()
    return [str(path)] if path.exists() else []


async def open_tunnel(entry: HostEntry, connect_timeout_s: float = 10.0) -> Tunnel:
    options: dict = {"config": _ssh_config(), "connect_timeout": connect_timeout_s}
    if entry.user:
        options["username"] = entry.user
    if entry.ssh_port:
        options["port"] = entry.ssh_port
    if entry.key:
        options["client_keys"] = [str(entry.key.expanduser())]
    known = (
        entry.known_hosts.expanduser()
        if entry.known_hosts
        else Path("~/.ssh/known_hosts").expanduser()
    )
    if not known.exists():
        raise TunnelError(
            f"{entry.name}: no known_hosts file at {known}; add the host's key first"
            f" (ssh {entry.address} once, or ssh-keyscan and check the fingerprint)"
        )
    options["known_hosts"] = str(known)
    try:
        conn = await asyncssh.connect(entry.address, **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise TunnelError(
            f"{entry.name}: host key of {entry.address} is not trusted ({exc.reason});"
            f" refusing to connect. If the host was rebuilt, check its fingerprint and update"
            f" {known}"
        ) from exc
    except asyncssh.KeyImportError as exc:
        # The console cannot ask for a passphrase in the middle of a screen: the SSH agent
        # holds decrypted keys, and asyncssh uses it.
        key = entry.key or "a key named in ~/.ssh/config"
        raise TunnelError(
            f"{entry.name}: cannot use {key}: {exc}. Add it to your SSH agent (ssh-add"
            f" {entry.key or 'KEY'}) and the console uses it from there"
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise TunnelError(
            f"{entry.name}: SSH login refused for user {entry.user or os.environ.get('USER')}"
            f" ({exc.reason}); check the key and the user in the fleet file"
        ) from exc
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise TunnelError(f"{entry.name}: cannot reach {entry.address} over SSH: {exc}") from exc
    try:
        token = entry.token
        if token is None:
            result = await conn.run(f"cat {shlex.quote(entry.token_file)}", check=False)
            if result.exit_status != 0:
                raise TunnelError(
                    f"{entry.name}: could not read the agent token {entry.token_file} on the"
                    f" host: {str(result.stderr).strip()}; is the agent running there?"
                )
            token = str(result.stdout).strip()
        listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", entry.agent_port)
    except BaseException:
        conn.close()
        raise
    return Tunnel(entry, conn, listener, token)
