"""promtool (from Debian's `prometheus` package, installed on first use like the OpenSSH
tests' sshd) checks what we hand Prometheus: the live /metrics text and the example rules."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus"


def promtool() -> str:
    found = shutil.which("promtool") or "/usr/bin/promtool"
    if Path(found).exists():
        return found
    result = subprocess.run(["bash", "-c", INSTALL], capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not Path("/usr/bin/promtool").exists():
        reason = f"promtool could not be installed: {result.stderr[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI runs the real check, never skips it
        pytest.skip(f"{reason} (a developer machine without apt access)")
    return "/usr/bin/promtool"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def check_metrics(text: str) -> None:
    """Fails on what promtool reports (naming, units, _total, help): its lint output."""
    result = run("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
