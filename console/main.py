"""`trackside console`: the TUI, on the local agent or on a fleet over SSH."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agent.client import DEFAULT_URL, ConfigError, load_fleet
from console.sources import HostSource, LocalSource, SshSource


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trackside console", description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=Path, help="fleet TOML: hosts reached over SSH")
    parser.add_argument(
        "--agent",
        default=os.environ.get("TRACKSIDE_AGENT", DEFAULT_URL),
        help="local agent URL when no --fleet is given",
    )
    parser.add_argument("--token-file", type=Path, help="local agent token file")
    parser.add_argument("--readonly", action="store_true", help="grey out every action")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, seconds")
    args = parser.parse_args(argv)
    sources: list[HostSource]
    if args.fleet:
        try:
            fleet = load_fleet(args.fleet)
        except ConfigError as exc:
            print(f"trackside console: {exc}", file=sys.stderr)
            return 2
        sources = [
            LocalSource(e.url, token=e.token, token_file=Path(e.token_file), name=e.name)
            if e.url  # reached directly (a fleet on one machine, or a cluster network)
            else SshSource(e)
            for e in fleet.hosts
        ]
    else:
        sources = [LocalSource(args.agent, token_file=args.token_file)]
    from console.app import TracksideConsole

    TracksideConsole(sources, readonly=args.readonly, poll_interval_s=args.interval).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
