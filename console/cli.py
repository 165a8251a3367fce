"""The `trackside` command: a thin dispatcher. Each verb is one row here; the verbs that talk
to an agent's API are one function each in agent/cli.py. A verb's package is imported only
when it runs (or when the help lists it)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    module: str  # its `main(argv) -> int` runs the verb
    summary: str


ENTRIES = {
    "console": Entry("console.main", "the TUI: the local agent, or --fleet FILE over SSH"),
    "models": Entry("serve.store_cli", "register and list model versions in the store"),
    "agent": Entry("agent.daemon", "run the host agent (add --controller on the Ray head)"),
    "token": Entry("agent.token_cli", "add, list or revoke the agent's named tokens"),
}


def _api_verbs() -> dict[str, str]:
    from agent.cli import VERBS

    return {name: v.summary for name, v in VERBS.items()}


def usage() -> str:
    rows = {name: e.summary for name, e in ENTRIES.items()} | _api_verbs()
    lines = [f"  {name:<9} {summary}" for name, summary in rows.items()]
    return "usage: trackside VERB [ARGS...]\n\nverbs:\n" + "\n".join(lines) + "\n"


def handler(verb: str) -> Callable[[list[str]], int] | None:
    if verb in ENTRIES:
        main: Callable[[list[str]], int] = importlib.import_module(ENTRIES[verb].module).main
        return main
    if verb in _api_verbs():
        from agent.cli import main as api_main

        return lambda argv: api_main(verb, argv)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    verb, rest = argv[0], argv[1:]
    run = handler(verb)
    if run is None:
        print(f"trackside: unknown verb {verb!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
