"""GET /metrics: host and GPU gauges in Prometheus' text format."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from agent.api.context import Context, authorized

router = APIRouter(tags=["metrics"], dependencies=[Depends(authorized)])
HOST_GAUGES = [
    ("cpu_pct", "CPU use, percent of all cores"),
    ("load1", "1-minute load average"),
    ("mem_pct", "memory in use, percent"),
    ("swap_pct", "swap in use, percent"),
    ("disk_pct", "disk in use, percent"),
]
GPU_GAUGES = [
    ("util_gpu", "GPU utilization, percent"),
    ("mem_used", "GPU memory used, bytes"),
    ("temp_c", "GPU temperature, Celsius"),
    ("power_w", "GPU power draw, watts"),
    ("ecc_uncorrected", "uncorrected ECC errors since the driver loaded (volatile)"),
    ("remapped_rows", "memory rows remapped (correctable and uncorrectable)"),
]
# Counted by this agent since it started (a restart resets them, as counters may).
GPU_COUNTERS = [("xid_errors", "xid_errors_total", "critical XID events")]


def _gauge(
    lines: list[str],
    name: str,
    help_text: str,
    samples: list[tuple[dict[str, Any], Any]],
    kind: str = "gauge",
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        if value is None:
            continue
        label = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{name}{{{label}}} {float(value)}" if label else f"{name} {float(value)}")


# Errors are JSON like everywhere else; only the answer is Prometheus' text.
JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for code, text in {401: "missing or wrong bearer token", 403: "not allowed"}.items()
}


@router.get("/metrics", response_class=PlainTextResponse, responses=JSON_ERRORS)
def metrics(ctx: Context) -> str:
    lines: list[str] = []
    host = ctx.store.latest("host_samples")
    h = host[0] if host else {}
    for key, help_text in HOST_GAUGES:
        _gauge(lines, f"trackside_host_{key}", help_text, [({}, h.get(key))])
    gpus = ctx.store.latest("gpu_samples", order="gpu_index")
    for key, help_text in GPU_GAUGES:
        samples = [({"gpu": g["gpu_index"], "uuid": g["uuid"]}, g.get(key)) for g in gpus]
        _gauge(lines, f"trackside_gpu_{key}", help_text, samples)
    for key, name, help_text in GPU_COUNTERS:
        samples = [({"gpu": g["gpu_index"], "uuid": g["uuid"]}, g.get(key)) for g in gpus]
        _gauge(lines, f"trackside_gpu_{name}", help_text, samples, kind="counter")
    return "\n".join(lines) + "\n"
