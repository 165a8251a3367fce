"""Secret files (the API token, the replay token): created once with mode 0600."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class SecretFileError(RuntimeError):
    pass


def read_secret(path: Path) -> str | None:
    """The secret at `path` if the file exists (checked as ensure_secret checks it)."""
    return ensure_secret(path) if path.exists() else None


def ensure_secret(path: Path) -> str:
    """Read the secret at `path`, creating it (mode 0600, random) if it does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            # Hex, not URL-safe base64: a token starting with "-" reads as an option to
            # `--token` on a command line.
            f.write(secrets.token_hex(32) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretFileError(
            f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
        )
    value = path.read_text().strip()
    if not value:
        raise SecretFileError(f"{path} is empty; delete it and a new secret is made at start")
    return value
