"""Ray's cluster token (token auth, RAY_AUTH_MODE=token), found where Ray itself looks:
RAY_AUTH_TOKEN, then the file RAY_AUTH_TOKEN_PATH names, then ~/.ray/auth_token."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def ray_auth_token(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    path = Path(env.get(TOKEN_PATH_ENV) or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def token_auth_env(token_file: Path) -> dict[str, str]:
    """The environment of every Ray node and agent of a cluster with token auth on: the
    token in a file of mode 0600 (made once, kept), named by path so `ps` never shows it."""
    if not token_file.exists():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return {AUTH_MODE_ENV: "token", TOKEN_PATH_ENV: str(token_file)}
