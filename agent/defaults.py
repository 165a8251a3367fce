"""Defaults every part agrees on, written once: where an agent listens and keeps its files."""

from __future__ import annotations

from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7070
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
DATA_DIR = Path(".trackside")
TOKEN_FILE = DATA_DIR / "agent.token"
