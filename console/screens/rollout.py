"""Rollout: the model's progressive rollout, its step, the evidence as it accumulates (each
metric's interval at the latest look against its limit), when the next look and the next
possible step are, the looks so far, and the controls (start, pause, resume, abort). Data from
the controller agent's /v1/rollouts; an agent without it is named and the controls stay
greyed out."""

from __future__ import annotations

from datetime import UTC, datetime

from textual import work
from textual.app import ComposeResult
from textual.markup import escape
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import AgentError, MetricVerdict, Rollout
from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen, FilterInput
from console.state import ConsoleState
from console.widgets.modals import ConfirmTyped, RolloutChoice, RolloutForm
from console.widgets.text import num, plain

VERDICT_STYLE = {"pass": "green", "marginal": "yellow", "fail": "red"}
STATE_STYLE = {"running": "green", "paused": "yellow", "done": "green"}


class RolloutsLoaded(Message):
    def __init__(self, rollouts: list[Rollout] | None, note: str | None = None) -> None:
        super().__init__()
        self.rollouts = rollouts
        self.note = note


def weight_text(weight: int) -> str:
    return f"{weight}%" if weight else "shadow"


def steps_text(r: Rollout) -> str:
    """shadow ✓ → 1% ✓ → 5% (now) → 25% → 50% → 100%, with each step's last verdict."""
    last: dict[int, str] = {}
    for j in r.judgements:
        last[j.step] = j.verdict
    parts = []
    for i, weight in enumerate(r.policy.weights()):
        mark = {"pass": " ✓", "marginal": " ?", "fail": " ✗"}.get(last.get(i, ""), "")
        text = f"{weight_text(weight)}{mark}"
        if i == r.step and r.state in ("running", "paused"):
            text = f"[b reverse] {text} [/]"
        parts.append(text)
    return " → ".join(parts)


def _in(seconds: float) -> str:
    left = max(0, int(seconds))
    return f"{left // 60}m{left % 60:02d}s"


def title_text(r: Rollout, now: datetime) -> str:
    style = STATE_STYLE.get(r.state, "red")
    where = "the shadow stage (no user sees it)" if r.weight == 0 else f"{r.weight}%"
    head = (
        f" [b]{r.model}[/b]: canary [b]{r.canary}[/b] against stable {r.stable}"
        f" · step {r.step + 1}/{len(r.policy.weights())}: {where} · [{style}]{r.state}[/]"
    )
    if r.state == "running":
        head += f" · look {r.looks + 1} in {_in((r.judge_at - now).total_seconds())}"
        dwell = r.policy.min_dwell_s - (now - r.step_started_at).total_seconds()
        if dwell > 0:  # a pass before then is noted, not acted on
            head += f" · can advance in {_in(dwell)}"
    if r.reason:
        head += f"\n {escape(r.reason)}"
    return head


def interval_text(m: MetricVerdict) -> str:
    """The effect's bounds, red past the limit, green within it."""
    if m.high is None:
        return "-"
    low = "…" if m.low is None else f"{m.low:.4g}"
    colour = "" if m.limit is None else "green" if m.high <= m.limit else "yellow"
    if m.low is not None and m.limit is not None and m.low > m.limit:
        colour = "red"
    text = f"{low} .. {m.high:.4g}"
    return f"[{colour}]{text}[/]" if colour else text


class RolloutScreen(ConsoleScreen):
    screen_name = "rollout"
    main = "#history"
    path = "/v1/rollouts"
    DEFAULT_CSS = """
    RolloutScreen #rollout-title { height: auto; background: $boost; }
    RolloutScreen #steps { height: auto; padding: 0 1; }
    RolloutScreen #judgement { height: auto; max-height: 8; }
    RolloutScreen #history { height: 1fr; }
    RolloutScreen #rollout-note { height: auto; max-height: 6; border-top: solid $accent;
                                  padding: 0 1; }
    """

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.rollouts: list[Rollout] = []
        self.model: str | None = None
        self.note = ""
        self._shown: tuple[Rollout, str] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="rollout-title")
        yield Static("", id="steps")
        yield DataTable(id="judgement", cursor_type="none")
        yield FilterInput("filter judgements (Enter applies, Esc clears)")
        yield DataTable(id="history", zebra_stripes=True, cursor_type="row")
        yield Static("", id="rollout-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#judgement", DataTable).add_columns(
            "METRIC", "VERDICT", "CANARY", "STABLE", "INTERVAL", "LIMIT", "NUMBERS"
        )
        self.query_one("#history", DataTable).add_columns(
            "WHEN (UTC)", "LOOK", "STEP", "WEIGHT", "VERDICT"
        )
        self.set_interval(2, self._reload_if_current)

    def _reload_if_current(self) -> None:
        if self.is_current:
            self.load()

    def select(self, *args: str) -> None:
        if args:
            self.model = args[0]

    def current(self) -> Rollout | None:
        return next((r for r in self.rollouts if r.model == self.model), None)

    # -- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        if self.controller is not None and self.state.offers(self.path):
            self.load_rollouts()

    @work(exclusive=True, group="rollouts")
    async def load_rollouts(self) -> None:
        client = self.controller
        if client is None:
            return
        try:
            self.post_message(RolloutsLoaded(await client.rollouts()))
        except AgentError as exc:
            self.post_message(RolloutsLoaded(None, f"[red]{escape(f'rollouts: {exc.message}')}[/]"))

    def on_rollouts_loaded(self, message: RolloutsLoaded) -> None:
        if message.rollouts is not None:
            self.rollouts = message.rollouts
        if message.note is not None:
            self.note = message.note
        self.show()

    # -- actions ------------------------------------------------------------------------------
    def _model(self, model: str | None) -> str | None:
        if model is not None:
            self.model = model
        return self.model

    def action_rollout_start(self, model: str | None = None, canary: str | None = None) -> None:
        status = self.state.model(self._model(model) or "")
        if status is None:
            self.notify("no deployed model to roll out", severity="warning")
            return
        candidates = [v.version for v in status.versions if v.version != status.stable]
        if canary in candidates:
            candidates.remove(canary)
            candidates.insert(0, canary)
        if not candidates:
            self.note = f"[red]{escape(status.model)} has no deployed version besides stable[/]"
            self.show()
            return

        def done(choice: RolloutChoice | None) -> None:
            if choice is not None:
                self.run_verb("start", status.model, choice)

        self.app.push_screen(RolloutForm(status.model, status.stable, candidates), done)

    def action_rollout_pause(self, model: str | None = None) -> None:
        self.run_verb("pause", self._model(model) or "")

    def action_rollout_resume(self, model: str | None = None) -> None:
        self.run_verb("resume", self._model(model) or "")

    def action_rollout_abort(self, model: str | None = None) -> None:
        self._model(model)
        r = self.current()
        if r is None or r.state not in ("running", "paused"):
            self.notify("no rollout in progress", severity="warning")
            return

        def done(ok: bool | None) -> None:
            if ok:
                self.run_verb("abort", r.model)

        question = (
            f"Abort the rollout of [b]{r.model}[/b]: all traffic back to {r.stable}"
            f" (the canary {r.canary} has {r.weight}%)."
        )
        self.app.push_screen(ConfirmTyped(question, r.canary), done)

    @work(exclusive=False, group="actions")
    async def run_verb(self, verb: str, model: str, choice: RolloutChoice | None = None) -> None:
        client = self.controller
        if client is None:
            self.post_message(RolloutsLoaded(None, "[red]no controller agent connected[/]"))
            return
        try:
            if choice is not None:
                r = await client.rollout_start(model, choice.canary, **choice.policy)
            else:
                r = await client.rollout_verb(model, verb)
            note = escape(
                f"rollout {verb} {model}: {r.state}" + (f" ({r.reason})" if r.reason else "")
            )
        except AgentError as exc:
            note = f"[red]{escape(f'rollout {verb} {model} refused: {exc.message}')}[/]"
        self.post_message(RolloutsLoaded(None, note))
        self.load_rollouts()

    # -- drawing ------------------------------------------------------------------------------
    def show(self) -> None:
        title = self.query_one("#rollout-title", Static)
        note = self.query_one("#rollout-note", Static)
        reason = unavailable(self.state, self.path, "progressive rollouts")
        models = self.state.models()
        if reason is None and not models:
            reason = "no model is deployed on the controller yet"
        if reason:
            title.update(" Rollout")
            note.update(reason)
            return
        if self.model not in {m.model for m in models}:
            self.model = models[0].model
        note.update(self.note)
        r = self.current()
        if r is None:
            title.update(
                f" [b]{escape(str(self.model))}[/b]: no rollout yet · [b]s[/b] starts one (the"
                " canary's weight steps up while the judge passes it)"
            )
            self.query_one("#steps", Static).update("")
            return
        title.update(title_text(r, datetime.now(UTC)))
        self.query_one("#steps", Static).update(steps_text(r))
        if self._shown != (r, self.filter_text):
            self._fill(r)

    def _fill(self, r: Rollout) -> None:
        self._shown = (r, self.filter_text)
        table = self.query_one("#judgement", DataTable)
        table.clear()
        latest = r.judgements[-1] if r.judgements else None
        for m in latest.metrics if latest else []:
            style = VERDICT_STYLE.get(m.verdict, "")
            table.add_row(
                m.metric,
                f"[{style}]{m.verdict}[/]",
                num(m.canary, "{:.4g}"),
                num(m.stable, "{:.4g}"),
                interval_text(m),
                num(m.limit, "{:.4g}"),
                plain(m.note),
            )
        history = self.query_one("#history", DataTable)
        history.clear()
        for j in reversed(r.judgements):
            if not self.matches(j.verdict, f"{j.weight}%", *(m.metric for m in j.metrics)):
                continue
            style = VERDICT_STYLE.get(j.verdict, "")
            history.add_row(
                j.at.strftime("%Y-%m-%d %H:%M:%S"),
                str(j.look),
                str(j.step + 1),
                weight_text(j.weight),
                f"[{style}]{j.verdict}[/]",
            )
