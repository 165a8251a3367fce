"""Who may call an agent: its tokens. Each is a file (mode 0600) in `<data_dir>/tokens/`
holding a name, a role and the sha256 of the secret (the secret itself is shown once, when
the token is made). The audit's `who` is the token's name.

Roles: `read` (every GET), `operate` (also every action). Two more tokens exist without a file
of their own: the agent's first token (`agent.token`, operate; the CLI and console on the
host use it, and they say who they are in x-trackside-user), and the controller's fleet token
(`fleet.token`, read, plus the fleet API's reads).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Role = Literal["read", "operate", "fleet"]
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
READS = ("GET", "HEAD")
# POSTs that only read (their body is a question, not a change).
READING_POSTS = ("/v1/fleet/",)


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    shared: bool = False  # the agent's first token: the caller names itself

    def may(self, method: str, path: str) -> bool:
        if self.role == "operate":
            return True
        if method in READS:
            return True
        return self.role == "fleet" and path.startswith(READING_POSTS)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenBook:
    """The tokens an agent accepts; named tokens are read again when their folder changes."""

    def __init__(self, folder: Path, agent_token: str, fleet_token: str | None = None) -> None:
        self.folder = folder
        self._fixed = [(digest(agent_token), Identity("agent-token", "operate", shared=True))]
        if fleet_token:
            self._fixed.append((digest(fleet_token), Identity("fleet", "fleet")))
        self._named: list[tuple[str, Identity]] = []
        self._seen: float | None = None
        self._lock = threading.Lock()

    def _reload(self) -> None:
        try:
            mtime = self.folder.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._seen:
            return
        with self._lock:
            named = []
            for doc in list_tokens(self.folder):
                role: Role = "operate" if doc["role"] == "operate" else "read"
                named.append((doc["sha256"], Identity(doc["name"], role)))
            self._named, self._seen = named, mtime

    def identify(self, secret: str) -> Identity | None:
        self._reload()
        presented = digest(secret)
        for known, identity in [*self._fixed, *self._named]:
            if hmac.compare_digest(presented, known):
                return identity
        return None


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def add_token(folder: Path, name: str, role: Role) -> str:
    """A new token; returns its secret (stored only as a hash)."""
    if not NAME.fullmatch(name):
        raise TokenError(f"token name {name!r}: lower-case letters, digits, '.', '_' and '-'")
    if role not in ("read", "operate"):
        raise TokenError(f"role {role!r}: read or operate")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    if path.exists():
        raise TokenError(f"a token named {name} exists; revoke it first")
    secret = secrets.token_hex(32)
    doc = {
        "name": name,
        "role": role,
        "sha256": digest(secret),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_private(path, json.dumps(doc) + "\n")
    os.utime(folder)  # agents notice the folder changed
    return secret


def revoke_token(folder: Path, name: str) -> None:
    path = folder / f"{name}.json"
    if not NAME.fullmatch(name) or not path.exists():
        raise TokenError(f"no token named {name} in {folder}")
    path.unlink()
    os.utime(folder)


def list_tokens(folder: Path) -> list[dict[str, str]]:
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("role") in ("read", "operate") and doc.get("sha256"):
            out.append(doc)
    return out
