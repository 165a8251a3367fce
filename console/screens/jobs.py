"""Jobs: the controller's batch jobs, newest first (state, progress, rows set aside, drift,
duration), the selected job's details below, and cancel (`c`) for a running one. Reloaded
every two seconds while the screen shows; `:jobs MODEL` shows one model's; `/` filters."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.markup import escape
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import AgentError, BatchJob
from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen, FilterInput
from console.state import ConsoleState
from console.widgets.modals import ConfirmTyped
from console.widgets.text import plain

PATH = "/v1/batch-jobs"
STATE_STYLE = {"running": "bold cyan", "succeeded": "green", "failed": "bold red"}
RELOAD_S = 2.0


class JobsLoaded(Message):
    def __init__(self, jobs: list[BatchJob], error: str | None) -> None:
        super().__init__()
        self.jobs = jobs
        self.error = error


class JobCancelled(Message):
    def __init__(self, job: BatchJob | None, error: str | None) -> None:
        super().__init__()
        self.job = job
        self.error = error


def progress(job: BatchJob, width: int = 10) -> str:
    share = (
        min(job.read / job.total, 1.0) if job.total else (1.0 if job.state == "succeeded" else 0)
    )
    filled = round(share * width)
    return f"{'█' * filled}{'░' * (width - filled)} {share:4.0%}"


def drift_cell(job: BatchJob) -> str:
    if job.drift is None:
        return "-"
    n = len(job.drift.drifted)
    text = f"{n}/{len(job.drift.features)} features"
    return f"[yellow]{text}[/]" if n else text


def duration(job: BatchJob) -> str:
    if job.duration_s is not None:
        return f"{job.duration_s:.0f}s"
    if job.eta_s is not None:
        return f"ETA {job.eta_s:.0f}s"
    return "-"


class JobsScreen(ConsoleScreen):
    screen_name = "jobs"
    main = "#jobs"
    DEFAULT_CSS = """
    JobsScreen #jobs { height: 1fr; }
    JobsScreen #jobs-note { height: auto; padding: 0 1; }
    JobsScreen #job-detail { height: auto; max-height: 40%; padding: 0 1;
                             border-top: solid $accent; }
    """

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.jobs: list[BatchJob] = []
        self.error: str | None = None
        self.model: str | None = None
        self.message: str | None = None  # the last action's answer

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="jobs-note")
        yield FilterInput("filter jobs (Enter applies, Esc clears)")
        yield DataTable(id="jobs", zebra_stripes=True, cursor_type="row")
        yield Static("", id="job-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#jobs", DataTable).add_columns(
            "JOB", "VERSION", "STATE", "PROGRESS", "ROWS READ", "ROWS/S", "SET ASIDE", "DRIFT",
            "TIME", "STARTED", "BY",
        )  # fmt: skip
        self.set_interval(RELOAD_S, self._reload)

    def select(self, *args: str) -> None:
        self.model = args[0] if args else None

    def load(self) -> None:
        self.load_jobs()

    def _reload(self) -> None:
        """While the screen shows: a running job's progress, and a job a schedule started."""
        if self.is_current:
            self.load_jobs()

    @work(exclusive=True, group="jobs")
    async def load_jobs(self) -> None:
        client = self.controller
        if client is None or not self.state.offers(PATH):
            self.post_message(JobsLoaded([], None))
            return
        try:
            jobs = await client.batch_jobs(self.model, limit=200)
        except AgentError as exc:
            self.post_message(JobsLoaded([], exc.message))
            return
        self.post_message(JobsLoaded(jobs, None))

    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        self.jobs, self.error = message.jobs, message.error
        self.show()

    def selected(self) -> BatchJob | None:
        table = self.query_one("#jobs", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((j for j in self.jobs if j.id == key), None)

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self._detail()

    def show(self) -> None:
        note = self.query_one("#jobs-note", Static)
        reason = unavailable(self.state, PATH, "batch jobs")
        table = self.query_one("#jobs", DataTable)
        keep = self.selected()
        table.clear()
        if reason:
            note.update(reason)
            self._detail()
            return
        running = sum(j.state == "running" for j in self.jobs)
        text = (
            f" {len(self.jobs)} jobs, {running} running · started by `trackside batch` or a"
            " model's [[batch]] schedule · times UTC"
        )
        if self.model:
            text += f" · model {escape(self.model)}"
        if self.error:
            text = f" [red]{escape(self.error)}[/]"
        if self.message:
            text += f"\n {self.message}"
        note.update(text)
        for j in self.jobs:
            cells = (j.id, f"{j.model}/{j.version}", j.state, j.who, j.schedule or "")
            if not self.matches(*cells):
                continue
            table.add_row(
                plain(j.id),
                plain(f"{j.model}/{j.version}"),
                f"[{STATE_STYLE.get(j.state, 'dim')}]{j.state}[/]",
                progress(j),
                f"{j.read:,}",
                f"{j.rows_per_s:,.0f}" if j.rows_per_s else "-",
                f"[yellow]{j.rejected:,}[/]" if j.rejected else "0",
                drift_cell(j),
                duration(j),
                j.started_at.strftime("%m-%d %H:%M"),
                plain((f"schedule {j.schedule}" if j.schedule else j.who)[:18]),
                key=j.id,
            )
        if keep is not None and keep.id in table.rows:  # the filter may have hidden it
            table.move_cursor(row=table.get_row_index(keep.id))
        self._detail()

    def _detail(self) -> None:
        job = self.selected()
        panel = self.query_one("#job-detail", Static)
        if job is None:
            panel.update(" no batch job selected")
            return
        lines = [
            f" [b]{escape(job.id)}[/b] · {escape(job.model)}/{escape(job.version)} (asked:"
            f" {escape(job.selector)}) · artifact {job.sha256[:12]}"
            + (f" · ran on {escape(job.provider)}" if job.provider else "")
            + (f" on {len(job.nodes)} node(s)" if job.nodes else ""),
            f" input {escape(job.input)}: {job.files} file(s), {job.total:,} rows, sha256"
            f" {job.input_sha256[:12]} → output {escape(job.output)}",
            f" rows: {job.read:,} read, {job.scored:,} scored, {job.rejected:,} set aside"
            " (their reasons are in the output's rejects/)",
        ]
        if job.phases is not None:
            p = job.phases
            lines.append(
                f" time in tasks: validate {p.validate_s:.1f}s, score {p.score_s:.1f}s,"
                f" write {p.write_s:.1f}s"
            )
        if job.startup():
            lines.append(f" {escape(job.startup() or '')}")
        if job.drift is not None:
            d = job.drift
            top = ", ".join(escape(f) for f in d.drifted[:6]) or "none"
            lines.append(f" drift against the reference: {len(d.drifted)} drifted ({top})")
            if d.prediction is not None and d.prediction.js is not None:
                lines.append(f" predicted labels: Jensen-Shannon {d.prediction.js:.3f}")
        if job.error:
            lines.append(f" [red]{escape(job.error)}[/]")
        if job.note:
            lines.append(f" [yellow]{escape(job.note)}[/]")
        panel.update("\n".join(lines))

    # -- cancel ------------------------------------------------------------------------------
    def action_batch_cancel(self) -> None:
        job = self.selected()
        if job is None or job.state != "running":
            self.notify("select a running job to cancel", severity="warning")
            return

        def done(ok: bool | None) -> None:
            if ok:
                self.cancel_job(job.id)

        question = (
            f"Cancel batch job [b]{escape(job.id)}[/b] ({job.read:,} of {job.total:,} rows"
            " read)? Nothing of its output is kept."
        )
        self.app.push_screen(ConfirmTyped(question, job.model), done)

    @work(exclusive=False, group="actions")
    async def cancel_job(self, job_id: str) -> None:
        client = self.controller
        if client is None:
            self.post_message(JobCancelled(None, "no controller agent connected"))
            return
        try:
            job = await client.batch_cancel(job_id)
        except AgentError as exc:
            self.post_message(JobCancelled(None, exc.message))
            return
        self.post_message(JobCancelled(job, None))

    def on_job_cancelled(self, message: JobCancelled) -> None:
        if message.error:
            self.message = f"[red]cancel refused: {escape(message.error)}[/]"
        elif message.job is not None:
            self.message = f"{escape(message.job.id)} {message.job.state}"
        self.load_jobs()
        self.show()
