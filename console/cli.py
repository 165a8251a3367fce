"""The `trackside` command: a thin dispatcher. Each verb imports its package only when run."""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """usage: trackside VERB [ARGS...]

verbs:
  console   the TUI: the local agent, or --fleet FILE over SSH
  models    register and list model versions in the store
  agent     run the host agent (add --controller on the Ray head)
  status    models, versions, traffic and Serve state, from the agent
  deploy    deploy a registered version (no traffic yet)
  traffic   set weights, shadow and fallback: trackside traffic digits v1=90 v2=10
  promote   give a version 100% and make it stable
  rollback  back to the previous stable (or --to VERSION)
  retire    remove a version that has no traffic
  audit     every action: who, when, before -> after
  drift     per-feature drift of a version's traffic: trackside drift digits
  replay    replay logged calls against a version: trackside replay digits v2 ID...
  rollout   start|status|pause|resume|abort a progressive rollout:
            trackside rollout start digits v2 --steps 10,50,100
"""


def _models(argv: list[str]) -> int:
    from serve.store_cli import main

    return main(argv)


def _agent(argv: list[str]) -> int:
    from agent.daemon import main

    return main(argv)


def _api_verb(verb: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from agent.cli import main

        return main(verb, argv)

    return run


def _console(argv: list[str]) -> int:
    from console.main import main

    return main(argv)


VERBS: dict[str, Callable[[list[str]], int]] = {
    "console": _console,
    "models": _models,
    "agent": _agent,
    **{
        verb: _api_verb(verb)
        for verb in (
            "status",
            "deploy",
            "traffic",
            "promote",
            "rollback",
            "retire",
            "audit",
            "drift",
            "replay",
            "rollout",
        )
    },
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    verb, rest = argv[0], argv[1:]
    handler = VERBS.get(verb)
    if handler is None:
        print(f"trackside: unknown verb {verb!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return handler(rest)


if __name__ == "__main__":
    sys.exit(main())
