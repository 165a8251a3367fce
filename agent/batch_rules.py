"""What a batch job may do, apart from running it (agent/batch_jobs.py): which version a
selector names, what Ray's job status means for the job, and when a schedule is due. Pure."""

from __future__ import annotations

from datetime import datetime

from agent.errors import Conflict, Invalid, NotFound
from agent.schemas.batch import BatchState
from serve.cron import Cron
from serve.manifest import Manifest

LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "latency")


def higher_is_better(metric: str, configured: dict[str, bool]) -> bool:
    """The model's blessing rule says; else a loss or an error is better lower."""
    if metric in configured:
        return configured[metric]
    return not any(metric.lower().endswith(word) for word in LOWER_IS_BETTER)


def resolve_version(
    selector: str, stable: str | None, manifests: list[Manifest], configured: dict[str, bool]
) -> str:
    """`stable`, `best:METRIC` (ties: the newest), or a registered version's name."""
    names = [m.version for m in manifests]
    if selector == "stable":
        if stable is None:
            raise Conflict("the model has no stable version yet: deploy it, or name a version")
        return stable
    if selector.startswith("best:"):
        metric = selector.removeprefix("best:")
        scored = [m for m in manifests if metric in m.metrics]
        if not scored:
            have = sorted({k for m in manifests for k in m.metrics})
            raise Invalid(f"no registered version has the offline metric {metric!r}; have: {have}")
        sign = 1.0 if higher_is_better(metric, configured) else -1.0
        best = max(scored, key=lambda m: (sign * m.metrics[metric], m.created_at))
        return best.version
    if selector not in names:
        raise NotFound(f"version {selector!r} is not registered; registered: {names}")
    return selector


# Ray's job status → the job's state (PENDING counts as running: it is submitted).
RAY_STATES: dict[str, BatchState] = {
    "PENDING": "running",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "STOPPED": "cancelled",
}


def state_of(ray_status: str, outcome_state: str | None) -> BatchState:
    """The driver's own outcome wins over Ray's word: a driver that wrote `failed` exits 1,
    which Ray also calls FAILED, but one that wrote `succeeded` and was stopped while exiting
    has finished its work."""
    if outcome_state in ("succeeded", "failed"):
        return "succeeded" if outcome_state == "succeeded" else "failed"
    return RAY_STATES.get(ray_status, "running")


def eta_s(done: int, total: int, elapsed_s: float) -> tuple[float | None, float | None]:
    """Rows per second so far, and the seconds left at that rate."""
    if elapsed_s <= 0 or done <= 0:
        return None, None
    rate = done / elapsed_s
    return rate, max(total - done, 0) / rate


STALL_S = 90.0  # a job that has read nothing by then is waiting for something


def stalled(rows_read: int, waited_s: float) -> str | None:
    """Why a running job may not be moving, in words an operator can act on."""
    if rows_read > 0 or waited_s < STALL_S:
        return None
    return (
        f"no row read in {waited_s:.0f}s: the cluster may lack free CPU, GPU or memory for the"
        " job's actors and tasks (Ray's dashboard lists what waits), or the driver is stuck"
    )


def due_slot(cron: Cron, last_run: datetime | None, now: datetime) -> datetime | None:
    """The one run owed now: the latest firing after the last run. Runs missed while the agent
    was down collapse into this one (never two jobs for one gap)."""
    latest = cron.latest_at_or_before(now)
    if latest is None or (last_run is not None and latest <= last_run):
        return None
    return latest
