"""Rollout: the model's progressive rollout, its step, the judge's latest numbers metric by
metric, the judgements so far, and the controls (start, pause, resume, abort). Data from
the controller agent's /v1/rollouts; an agent without it is named and the controls stay
greyed out."""

from __future__ import annotations

from datetime import UTC, datetime

from textual.app import ComposeResult
from textual.markup import escape
from textual.widgets import DataTable, Footer, Header, Static

from agent.client import Rollout
from console.screens.availability import unavailable
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.text import num, plain

VERDICT_STYLE = {"pass": "green", "marginal": "yellow", "fail": "red"}
STATE_STYLE = {"running": "green", "paused": "yellow", "done": "green"}


def steps_text(r: Rollout) -> str:
    """5% ✓ → 25% (now) → 50% → 100%, with each step's last verdict."""
    last: dict[int, str] = {}
    for j in r.judgements:
        last[j.step] = j.verdict
    parts = []
    for i, weight in enumerate(r.policy.steps):
        mark = {"pass": " ✓", "marginal": " ?", "fail": " ✗"}.get(last.get(i, ""), "")
        text = f"{weight}%{mark}"
        if i == r.step and r.state in ("running", "paused"):
            text = f"[b reverse] {text} [/]"
        parts.append(text)
    return " → ".join(parts)


def title_text(r: Rollout, now: datetime) -> str:
    style = STATE_STYLE.get(r.state, "red")
    head = (
        f" [b]{r.model}[/b]: canary [b]{r.canary}[/b] against stable {r.stable}"
        f" · step {r.step + 1}/{len(r.policy.steps)} at {r.policy.steps[r.step]}%"
        f" · [{style}]{r.state}[/]"
    )
    if r.state == "running":
        left = max(0, int((r.judge_at - now).total_seconds()))
        head += f" · next judgement in {left // 60}m{left % 60:02d}s"
    if r.reason:
        head += f"\n {escape(r.reason)}"
    return head


class RolloutScreen(ConsoleScreen):
    screen_name = "rollout"
    CSS_PATH = "rollout.tcss"
    path = "/v1/rollouts"

    def __init__(self) -> None:
        super().__init__(name="rollout")
        self.rollouts: list[Rollout] = []
        self.model: str | None = None
        self.note = ""
        self._shown: Rollout | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="rollout-title")
        yield Static("", id="steps")
        yield DataTable(id="judgement", cursor_type="none")
        yield DataTable(id="history", zebra_stripes=True, cursor_type="row")
        yield Static("", id="rollout-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#judgement", DataTable).add_columns(
            "METRIC", "VERDICT", "CANARY", "STABLE", "P", "NUMBERS"
        )
        self.query_one("#history", DataTable).add_columns("WHEN (UTC)", "STEP", "WEIGHT", "VERDICT")
        self.set_interval(2, self._reload_if_current)

    def _reload_if_current(self) -> None:
        if self.is_current:
            self.app.load_rollouts()  # type: ignore[attr-defined]

    def current(self) -> Rollout | None:
        return next((r for r in self.rollouts if r.model == self.model), None)

    def show(self, state: ConsoleState) -> None:
        title = self.query_one("#rollout-title", Static)
        note = self.query_one("#rollout-note", Static)
        reason = unavailable(state, self.path, "progressive rollouts")
        models = state.models()
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
                f" [b]{self.model}[/b]: no rollout yet · [b]s[/b] starts one (the canary's"
                " weight steps up while the judge passes it)"
            )
            self.query_one("#steps", Static).update("")
            return
        title.update(title_text(r, datetime.now(UTC)))
        self.query_one("#steps", Static).update(steps_text(r))
        if r != self._shown:
            self._fill(r)

    def _fill(self, r: Rollout) -> None:
        self._shown = r
        table = self.query_one("#judgement", DataTable)
        table.clear()
        latest = r.judgements[-1] if r.judgements else None
        for m in latest.metrics if latest else []:
            style = VERDICT_STYLE.get(m.get("verdict", ""), "")
            table.add_row(
                m.get("metric", "?"),
                f"[{style}]{m.get('verdict')}[/]" if style else str(m.get("verdict")),
                num(m.get("canary"), "{:.4g}"),
                num(m.get("stable"), "{:.4g}"),
                num(m.get("p_value"), "{:.2g}"),
                plain(m.get("note") or ""),
            )
        history = self.query_one("#history", DataTable)
        history.clear()
        for j in reversed(r.judgements):
            style = VERDICT_STYLE.get(j.verdict, "")
            history.add_row(
                j.at.strftime("%Y-%m-%d %H:%M:%S"),
                str(j.step + 1),
                f"{j.weight}%",
                f"[{style}]{j.verdict}[/]",
            )
