"""`trackside models ...`: register and list model versions in the store."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from serve.model_store import DEFAULT_STORE, ModelStore, StoreError
from serve.names import InvalidName
from serve.registration import manifest_fields


def default_store() -> Path:
    return Path(os.environ.get("TRACKSIDE_STORE", DEFAULT_STORE))


def _parse_metrics(items: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            metrics[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--metric {item!r}: write NAME=NUMBER, e.g. accuracy=0.97") from None
    return metrics


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_register(args: argparse.Namespace) -> int:
    store = ModelStore(args.store)
    fields = manifest_fields(
        args.model,
        args.version,
        Path(args.artifact),
        Path(args.reference) if args.reference else None,
        metrics=_parse_metrics(args.metric),
        calibration_sample=Path(args.calibration) if args.calibration else None,
    )
    manifest = store.register(
        fields, Path(args.artifact), Path(args.reference) if args.reference else None
    )
    print(
        f"registered {manifest.model}/{manifest.version} sha256 {manifest.sha256}"
        f" in {store.version_dir(manifest.model, manifest.version)}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = ModelStore(args.store)
    manifests = store.list(args.model)
    if args.json:
        print(json.dumps([json.loads(m.model_dump_json()) for m in manifests], indent=2))
        return 0
    if not manifests:
        where = f" for model {args.model}" if args.model else ""
        print(f"no model versions in {store.root}{where}")
        return 0
    rows = [
        [
            m.model,
            m.version,
            m.framework,
            m.sha256[:12],
            m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            " ".join(f"{k}={v:.4g}" for k, v in sorted(m.metrics.items())) or "-",
        ]
        for m in manifests
    ]
    print(
        format_table(rows, ["MODEL", "VERSION", "FRAMEWORK", "SHA256", "CREATED (UTC)", "METRICS"])
    )
    return 0


def build_parser(prog: str = "trackside models") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The model store.")
    parser.add_argument(
        "--store",
        type=Path,
        default=default_store(),
        help="store folder (default $TRACKSIDE_STORE or ./.trackside/models)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="register an ONNX artifact as a new version")
    reg.add_argument("model")
    reg.add_argument("version")
    reg.add_argument("artifact", help="the .onnx file")
    reg.add_argument("--reference", help="reference sample (parquet) of the training data")
    reg.add_argument(
        "--calibration",
        help="labelled held-out rows (parquet, the reference's columns and `label`): how often"
        " the model is right at each confidence, for estimating accuracy before labels come",
    )
    reg.add_argument(
        "--metric", action="append", default=[], metavar="NAME=VALUE", help="offline metric"
    )
    reg.set_defaults(func=cmd_register)
    lst = sub.add_parser("list", help="list registered versions")
    lst.add_argument("model", nargs="?")
    lst.add_argument("--json", action="store_true", help="print manifests as JSON")
    lst.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StoreError, InvalidName, ValueError) as exc:
        print(f"trackside models: {exc}", file=sys.stderr)
        return 2
