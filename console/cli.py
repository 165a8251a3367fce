"""The `trackside` command: a thin dispatcher. Each verb imports its package only when run."""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """usage: trackside VERB [ARGS...]

verbs:
  models    register and list model versions in the store
"""


def _models(argv: list[str]) -> int:
    from serve.store_cli import main

    return main(argv)


VERBS: dict[str, Callable[[list[str]], int]] = {
    "models": _models,
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
