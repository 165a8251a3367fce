"""Stops a local Ray node when the process that started it dies without stopping it.

Run as `python -m serve.cluster_watchdog PARENT_PID RAY_START_PID TEMP_DIR`. `ray start`
runs in its own session, so nothing else would end it if its parent were killed.
"""

from __future__ import annotations

import sys
import time

import psutil


def node_processes(ray_start_pid: int, temp_dir: str | None) -> list[psutil.Process]:
    """The node's `ray start` and its descendants, and (with `temp_dir`) any process whose
    command line names the node's temp dir (workers re-parented after a crash)."""
    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(ray_start_pid)
        found[root.pid] = root
        for child in root.children(recursive=True):
            found[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    for proc in psutil.process_iter(["cmdline"]) if temp_dir else []:
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or []):
                found.setdefault(proc.pid, proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    found.pop(psutil.Process().pid, None)
    return list(found.values())


def main() -> int:
    parent, ray_start, temp_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    while psutil.pid_exists(parent) and psutil.pid_exists(ray_start):
        time.sleep(1.0)
    if not psutil.pid_exists(ray_start):
        return 0  # stopped normally
    procs = node_processes(ray_start, temp_dir)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
