"""The demo's alert hook: reads an alert's payload (agent/alerts.py) on stdin and appends one
line to the file it is given (or $TRACKSIDE_ALERT_LOG, or .trackside/alerts.log). A real
hook would start a retraining pipeline."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ALERT_LOG_ENV = "TRACKSIDE_ALERT_LOG"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0] if args else os.environ.get(ALERT_LOG_ENV, ".trackside/alerts.log"))
    alert = json.loads(sys.stdin.read())
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as out:
        out.write(f"{alert['at']} {alert['status']}: {alert['summary']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
