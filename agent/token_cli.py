"""`trackside token add|list|revoke`: the named tokens of the agent on this host (files in
its data folder; the agent notices changes at once, no restart)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.defaults import DATA_DIR
from agent.tokens import TokenError, add_token, list_tokens, revoke_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trackside token", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the agent's data_dir")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="a new token for a person or a script (shown once)")
    add.add_argument("name")
    add.add_argument("--role", choices=["read", "operate"], default="read")
    sub.add_parser("list", help="every named token: name, role, created")
    revoke = sub.add_parser("revoke", help="refuse a token from now on")
    revoke.add_argument("name")
    args = parser.parse_args(argv)
    folder = args.data_dir / "tokens"
    try:
        if args.action == "add":
            secret = add_token(folder, args.name, args.role)
            print(secret)
            print(
                f"token {args.name} ({args.role}) added; it is shown only now: keep it in a"
                " file of mode 0600 (e.g. TRACKSIDE_TOKEN_FILE) or $TRACKSIDE_TOKEN",
                file=sys.stderr,
            )
        elif args.action == "list":
            for doc in list_tokens(folder):
                print(f"{doc['name']:<24} {doc['role']:<8} {doc.get('created', '')}")
        else:
            revoke_token(folder, args.name)
            print(f"token {args.name} revoked")
    except TokenError as exc:
        print(f"trackside token: {exc}", file=sys.stderr)
        return 2
    return 0
