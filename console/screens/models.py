"""Models: each model's versions with weights, shadow, replicas, autoscaling, live latency,
accuracy over the last hour (measured from ground truth, with its label coverage, and the
estimate from the calls' confidence) and its trend in 5-minute points, and Serve's problems
(e.g. "unschedulable: needs GPU"). The actions (traffic, promote, rollback, retire) act on
the selected row, or on the model and version the command line names; each answer, the
table before → after or the agent's refusal, is shown below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.markup import escape
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import (
    AccuracyReport,
    ActionResult,
    AgentError,
    LatencyPoint,
    ModelStatus,
    VersionAccuracy,
)
from console.screens.base import ConsoleScreen, FilterInput
from console.state import ConsoleState
from console.widgets.modals import ConfirmTyped, TrafficChoice, TrafficForm
from console.widgets.text import num, plain, sparkline


def host_split(calls: dict[str, int]) -> str:
    """`node-a 40% node-b 35% node-c 25%`: where a version's calls were served."""
    total = sum(calls.values())
    if not total:
        return "-"
    return " ".join(f"{h} {n / total:.0%}" for h, n in sorted(calls.items()))


def latency_by_version(points: list[LatencyPoint], model: str) -> dict[str, LatencyPoint]:
    """The newest point per version of `model`."""
    out: dict[str, LatencyPoint] = {}
    for p in sorted(points, key=lambda p: p.t):
        if p.model == model and p.version:
            out[p.version] = p
    return out


class ActionAnswered(Message):
    """What the controller answered to one of this screen's actions."""

    def __init__(self, text: str, error: bool) -> None:
        super().__init__()
        self.text = text
        self.error = error


class AccuracyLoaded(Message):
    def __init__(self, reports: dict[str, AccuracyReport]) -> None:
        super().__init__()
        self.reports = reports


ACCURACY_WINDOW = timedelta(hours=1)
ACCURACY_POINTS = 12  # of 5 minutes each: the hour's trend
ACCURACY_EVERY_S = 10.0  # the ground truth moves slowly; the fleet is asked this often


def accuracy_text(v: VersionAccuracy | None) -> str:
    """97.1% (12% labelled), or ~95.0% est. when only the confidence-based estimate is in."""
    if v is None:
        return "-"
    if v.accuracy is not None:
        share = f", {v.coverage:.0%} labelled" if v.coverage is not None else ""
        est = f", est. {v.estimated:.1%}" if v.estimated is not None else ""
        return f"{v.accuracy:.1%}{share}{est}"
    return f"~{v.estimated:.1%} est." if v.estimated is not None else "-"


def accuracy_trend(v: VersionAccuracy | None) -> str:
    """The hour in 5-minute points, measured where labels are in, else estimated; a point
    with neither is blank. Scaled from the hour's lowest to its highest: a fall shows."""
    if v is None or not v.points:
        return "-"
    values = [p.accuracy if p.accuracy is not None else p.estimated for p in v.points]
    known = [x for x in values if x is not None]
    if not known:
        return "-"
    lo, hi = min(known) - 0.02, max(known)
    return "".join(" " if x is None else sparkline([x], lo, hi, 1) for x in values)


class ModelsScreen(ConsoleScreen):
    screen_name = "models"
    main = "#versions"
    DEFAULT_CSS = """
    ModelsScreen #tables { height: 1; background: $boost; }
    ModelsScreen #versions { height: 1fr; }
    ModelsScreen #problems { height: auto; max-height: 6; padding: 0 1; color: $error; }
    ModelsScreen #result { height: auto; max-height: 6; border-top: solid $accent;
                           padding: 0 1; }
    """

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.rows: dict[str, tuple[str, str]] = {}  # row key → (model, version)
        self.wanted: str | None = None  # a row the command line asked for
        self.accuracy: dict[str, AccuracyReport] = {}  # model → the last hour's

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="tables")
        yield FilterInput()
        yield DataTable(id="versions", zebra_stripes=True, cursor_type="row")
        # Every problem in full (the table's column is cut at the screen's edge).
        yield Static("", id="problems")
        yield Static("", id="result")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#versions", DataTable)
        for key, label in [
            ("model", "MODEL"),
            ("version", "VERSION"),
            ("weight", "WEIGHT"),
            ("shadow", "SHADOW"),
            ("role", "ROLE"),
            ("status", "STATUS"),
            ("replicas", "REPLICAS"),
            ("runs_on", "RUNS ON"),
            ("target", "TARGET"),
            ("p50", "p50 ms"),
            ("p99", "p99 ms"),
            ("rps", "RPS"),
            ("err", "ERR%"),
            ("accuracy", "ACCURACY (1 h)"),
            ("trend", "TREND (5 min)"),
            ("hosts", "HOSTS (5 min)"),
            ("problem", "PROBLEM"),
        ]:
            table.add_column(label, key=key)
        table.focus()
        self.set_interval(ACCURACY_EVERY_S, self._reload_if_current)

    def _reload_if_current(self) -> None:
        if self.is_current:
            self.load()

    def load(self) -> None:
        if self.controller is not None and self.state.offers("/v1/accuracy"):
            self.load_accuracy()

    @work(exclusive=True, group="accuracy")
    async def load_accuracy(self) -> None:
        client = self.controller
        if client is None:
            return
        since = datetime.now(UTC) - ACCURACY_WINDOW
        reports = {}
        for m in self.state.models():
            try:
                reports[m.model] = await client.accuracy(
                    m.model, since=since, buckets=ACCURACY_POINTS
                )
            except AgentError:
                continue  # the column shows "-"; the screen's other data is unaffected
        self.post_message(AccuracyLoaded(reports))

    def on_accuracy_loaded(self, message: AccuracyLoaded) -> None:
        self.accuracy = message.reports
        self.show()

    # -- what is selected -------------------------------------------------------------------
    def select(self, *args: str) -> None:
        if args:
            self.filter_text = ""
            self.wanted = "/".join(args[:2])

    def selected(self) -> tuple[str, str] | None:
        table = self.query_one("#versions", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(str(key))

    def _target(self, model: str | None, version: str | None) -> tuple[str, str] | None:
        """The command line's model (and version), else the selected row."""
        if model is not None:
            status = self.state.model(model)
            if status is None:
                self.report(f"no model {model} on the controller", error=True)
                return None
            if version is not None and version not in {v.version for v in status.versions}:
                self.report(f"{model} has no deployed version {version}", error=True)
                return None
            return model, version or status.stable
        selected = self.selected()
        if selected is None:
            self.report("select a version first", error=True)
        return selected

    def report(self, text: str, error: bool = False) -> None:
        shown = escape(text)  # agents' messages quote versions, weights, anything
        self.query_one("#result", Static).update(f"[red]{shown}[/]" if error else shown)
        self.notify(text, severity="error" if error else "information", timeout=6, markup=False)

    def on_action_answered(self, message: ActionAnswered) -> None:
        self.report(message.text, message.error)

    # -- actions ------------------------------------------------------------------------------
    def action_traffic(self, model: str | None = None) -> None:
        target = self._target(model, None)
        status = self.state.model(target[0]) if target else None
        if status is None:
            return

        def done(result: TrafficChoice | None) -> None:
            if result is not None:
                self.apply("traffic", status.model, result)

        self.app.push_screen(TrafficForm(status), done)

    def _confirm_then(self, question: str, phrase: str, verb: str, model: str, arg: str) -> None:
        """Ask for the typed phrase ("No" focused); only a confirmed action reaches the agent."""

        def done(ok: bool | None) -> None:
            if ok:
                self.apply(verb, model, arg)

        self.app.push_screen(ConfirmTyped(question, phrase), done)

    def action_promote(self, model: str | None = None, version: str | None = None) -> None:
        target = self._target(model, version)
        if target is None:
            return
        model, version = target
        question = f"Promote [b]{model}/{version}[/b]: 100% of traffic, and it becomes stable."
        self._confirm_then(question, version, "promote", model, version)

    def action_rollback(self, model: str | None = None) -> None:
        target = self._target(model, None)
        status = self.state.model(target[0]) if target else None
        if status is None:
            return
        if not status.previous_stable:
            self.report(
                f"{status.model} has no previous stable version to roll back to", error=True
            )
            return
        back_to = status.previous_stable[-1]
        question = f"Roll back [b]{status.model}[/b] from {status.stable} to {back_to} (100%)."
        self._confirm_then(question, back_to, "rollback", status.model, back_to)

    def action_retire(self, model: str | None = None, version: str | None = None) -> None:
        target = self._target(model, version)
        if target is None:
            return
        model, version = target
        self._confirm_then(f"Retire [b]{model}/{version}[/b].", version, "retire", model, version)

    @work(exclusive=False, group="actions")
    async def apply(self, verb: str, model: str, arg: str | TrafficChoice) -> None:
        client = self.controller
        if client is None:
            self.post_message(ActionAnswered("no controller agent connected", True))
            return
        try:
            result: ActionResult
            if isinstance(arg, TrafficChoice):
                result = await client.set_traffic(
                    model, arg.weights, shadow=arg.shadow, fallback=arg.fallback
                )
            elif verb == "promote":
                result = await client.promote(model, arg)
            elif verb == "rollback":
                result = await client.rollback(model, arg)
            else:
                result = await client.retire(model, arg)
        except AgentError as exc:
            self.post_message(ActionAnswered(f"{verb} {model} refused: {exc.message}", True))
            return
        before = result.before.summary() if result.before else "-"
        after = result.after.summary() if result.after else "-"
        text = f"{result.action} {model}: {result.message} · {before} → {after}"
        self.post_message(ActionAnswered(f"{text} (audit #{result.audit_id})", False))
        await self.app.run_action("refresh")

    # -- drawing --------------------------------------------------------------------------------
    def show(self) -> None:
        table = self.query_one("#versions", DataTable)
        ctl = self.state.controller()
        header = self.query_one("#tables", Static)
        if ctl is None:
            header.update(" no controller agent connected: models come from the Ray head's agent")
            table.clear()
            return
        models: list[ModelStatus] = ctl.models or []
        self.query_one("#problems", Static).update(
            "\n".join(
                f"{escape(m.model)}/{escape(v.version)}: {escape(v.problem)}"
                for m in models
                for v in m.versions
                if v.problem
            )
        )
        missing = sorted({h.host for m in models for h in m.coverage.missing})
        header.update(
            "  ".join(
                f"[b]{escape(m.model)}[/b] route #{m.table.route_version} stable"
                f" {escape(m.stable)} router {m.router_status or '-'}"
                for m in models
            )
            + (f"  [red]no answer from {escape(', '.join(missing))}[/]" if missing else "")
            or " no models deployed"
        )
        cursor = table.cursor_row
        table.clear()
        self.rows.clear()
        for m in models:
            lat = latency_by_version(ctl.latency, m.model)
            report = self.accuracy.get(m.model)
            acc = {a.version: a for a in report.versions} if report else {}
            for v in m.versions:
                p = lat.get(v.version)
                role = ", ".join(
                    r for r, on in (("stable", v.is_stable), ("fallback", v.is_fallback)) if on
                )
                if not self.matches(m.model, v.version, role, v.app_status, v.problem):
                    continue
                target = (v.autoscaling or {}).get("target_ongoing_requests")
                bounds = v.autoscaling or {}
                replicas = " ".join(f"{k.lower()}:{n}" for k, n in sorted(v.replicas.items()))
                key = f"{m.model}/{v.version}"
                self.rows[key] = (m.model, v.version)
                table.add_row(
                    m.model,
                    v.version,
                    f"{v.weight}%",
                    f"{v.shadow_fraction:g}" if v.shadow_fraction else "-",
                    role or "-",
                    v.app_status or "-",
                    replicas or "-",
                    v.runs_on_summary(),
                    f"{target:g} ({bounds.get('min_replicas')}-{bounds.get('max_replicas')})"
                    if target
                    else "-",
                    num(p.p50_ms if p else None, "{:.0f}"),
                    num(p.p99_ms if p else None, "{:.0f}"),
                    num(p.rps if p else None, "{:.1f}"),
                    num(p.error_rate * 100 if p else None, "{:.1f}"),
                    accuracy_text(acc.get(v.version)),
                    accuracy_trend(acc.get(v.version)),
                    plain(host_split(v.hosts)),
                    Text(v.problem, style="red") if v.problem else "",
                    key=key,
                )
        if self.wanted in self.rows:
            cursor, self.wanted = list(self.rows).index(self.wanted), None
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
