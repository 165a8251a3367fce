"""Modals for actions: a typed confirmation (No focused), and the traffic, replay and
rollout forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Select, Static

from agent.client import ModelStatus, RolloutPolicy

T = TypeVar("T")


@dataclass(frozen=True)
class TrafficChoice:
    weights: dict[str, int]
    shadow: tuple[str, float] | None
    fallback: str | None


@dataclass(frozen=True)
class ReplayChoice:
    version: str
    ids: list[str]


@dataclass(frozen=True)
class RolloutChoice:
    canary: str
    policy: dict[str, Any]  # overrides of the model's rollout policy


class ConfirmTyped(ModalScreen[bool]):
    """Dangerous actions: the operator types the version to confirm; "No" has the focus."""

    DEFAULT_CSS = """
    ConfirmTyped { align: center middle; }
    ConfirmTyped > Vertical { width: 64; height: auto; border: thick $warning; padding: 1 2;
                              background: $surface; }
    ConfirmTyped Horizontal { height: auto; margin-top: 1; }
    ConfirmTyped Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "dismiss(False)", "Cancel")]

    def __init__(self, question: str, phrase: str) -> None:
        super().__init__()
        self.question = question
        self.phrase = phrase

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, id="question")
            yield Label(Text.assemble("Type ", (self.phrase, "bold"), " to confirm:"))
            yield Input(placeholder=self.phrase, id="phrase")
            with Horizontal():
                yield Button("No", id="no", variant="primary")
                yield Button("Yes", id="yes", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = event.value.strip() != self.phrase

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.phrase:
            self.dismiss(True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class FormModal(ModalScreen[T | None], Generic[T]):
    """What every action form shares: centred, bordered, a grid of labelled fields, an error
    line and the buttons; Escape cancels. `validated` gives the form's answer, or a sentence
    saying what is wrong with it (shown in #error)."""

    DEFAULT_CSS = """
    FormModal { align: center middle; }
    FormModal > Vertical { width: 72; height: auto; border: thick $accent; padding: 1 2;
                           background: $surface; }
    FormModal Grid { grid-size: 2; grid-columns: 24 1fr; height: auto; grid-rows: 3; }
    FormModal #error { color: $error; height: auto; }
    FormModal Horizontal { height: auto; margin-top: 1; }
    FormModal Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "dismiss(None)", "Cancel")]

    def validated(self) -> T | str:
        raise TypeError(f"{type(self).__name__} must define validated()")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        result = self.validated()
        if isinstance(result, str):
            self.query_one("#error", Static).update(result)
            return
        self.dismiss(result)


class TrafficForm(FormModal[TrafficChoice]):
    """Weights per deployed version (must sum to 100), shadow and fallback."""

    def __init__(self, model: ModelStatus) -> None:
        super().__init__()
        self.model = model

    def compose(self) -> ComposeResult:
        table = self.model.table
        with Vertical():
            yield Static(f"Traffic for [b]{self.model.model}[/b] (route #{table.route_version})")
            with Grid():
                for v in self.model.versions:
                    yield Label(f"{v.version} %")
                    yield Input(
                        str(table.weights.get(v.version, 0)), id=f"w-{v.version}", type="integer"
                    )
                yield Label("shadow version")
                yield Input(table.shadow.version if table.shadow else "", id="shadow-version")
                yield Label("shadow fraction")
                yield Input(
                    f"{table.shadow.fraction:g}" if table.shadow else "0",
                    id="shadow-fraction",
                    type="number",
                )
                yield Label("fallback")
                yield Input(table.fallback or "", id="fallback")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Cancel", id="cancel")

    def validated(self) -> TrafficChoice | str:
        weights = {}
        for v in self.model.versions:
            text = self.query_one(f"#w-{v.version}", Input).value.strip() or "0"
            try:
                weights[v.version] = int(text)
            except ValueError:
                return f"weight of {v.version} must be a whole number"
            if not 0 <= weights[v.version] <= 100:
                return f"weight of {v.version} must be 0..100"
        if sum(weights.values()) != 100:
            return f"weights sum to {sum(weights.values())}, not 100"
        versions = {v.version for v in self.model.versions}
        shadow_version = self.query_one("#shadow-version", Input).value.strip()
        try:
            fraction = float(self.query_one("#shadow-fraction", Input).value.strip() or "0")
        except ValueError:
            return "shadow fraction must be a number"
        shadow = None
        if shadow_version:
            if shadow_version not in versions:
                return f"shadow version {shadow_version} is not deployed"
            if not 0 < fraction <= 1:
                return "shadow fraction must be in (0, 1]"
            shadow = (shadow_version, fraction)
        fallback = self.query_one("#fallback", Input).value.strip() or None
        if fallback and fallback not in versions:
            return f"fallback {fallback} is not deployed"
        return TrafficChoice({k: w for k, w in weights.items() if w}, shadow, fallback)


class ReplayForm(FormModal[ReplayChoice]):
    """Replay the selected request, or every listed primary call of its model, against a
    deployed version (the one that answered, by default: does it reproduce?)."""

    DEFAULT_CSS = """
    ReplayForm Select, ReplayForm RadioSet { margin-top: 1; width: 100%; }
    """

    def __init__(
        self, model: str, versions: list[str], version: str, selected: str, listed: list[str]
    ) -> None:
        super().__init__()
        self.model = model
        self.versions = versions
        self.version = version if version in versions else versions[0]
        self.selected = selected
        self.listed = listed

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Replay logged calls of [b]{self.model}[/b] against version:")
            yield Select(
                [(v, v) for v in self.versions], value=self.version, allow_blank=False, id="version"
            )
            with RadioSet(id="scope"):
                yield RadioButton(f"the selected request {self.selected[:28]}", value=True)
                yield RadioButton(f"all {len(self.listed)} listed primary calls of {self.model}")
            with Horizontal():
                yield Button("Replay", id="replay", variant="primary")
                yield Button("Cancel", id="cancel")

    def validated(self) -> ReplayChoice | str:
        every = self.query_one("#scope", RadioSet).pressed_index == 1
        version = self.query_one("#version", Select).value
        return ReplayChoice(str(version), list(self.listed) if every else [self.selected])


class RolloutForm(FormModal[RolloutChoice]):
    """Start a progressive rollout: the canary, and (optionally) steps and the least time per
    step; left empty, they come from the model's rollout policy."""

    def __init__(self, model: str, stable: str, candidates: list[str]) -> None:
        super().__init__()
        self.model = model
        self.stable = stable
        self.candidates = candidates

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Roll out a canary of [b]{self.model}[/b] (stable: {self.stable})")
            with Grid():
                yield Label("canary")
                yield Select(
                    [(v, v) for v in self.candidates],
                    value=self.candidates[0],
                    allow_blank=False,
                    id="canary",
                )
                yield Label("steps, % (policy)")
                yield Input(placeholder="e.g. 1,5,25,50,100", id="steps")
                yield Label("least seconds per step")
                yield Input(placeholder="the policy's", id="dwell", type="number")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Start", id="start", variant="primary")
                yield Button("Cancel", id="cancel")

    def validated(self) -> RolloutChoice | str:
        """The overrides, checked by the rollout policy's own model (the agent checks the
        same again, with the model's policy for everything left empty)."""
        policy: dict[str, Any] = {}
        steps = self.query_one("#steps", Input).value.replace(" ", "")
        if steps:
            try:
                policy["steps"] = [int(s) for s in steps.split(",")]
            except ValueError:
                return "steps are whole percentages separated by commas"
        dwell = self.query_one("#dwell", Input).value.strip()
        if dwell:
            try:
                policy["min_dwell_s"] = float(dwell)
            except ValueError:
                return "seconds per step must be a number"
        try:
            RolloutPolicy.model_validate(policy)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            return escape(f"{where}: " * bool(where) + err["msg"].removeprefix("Value error, "))
        return RolloutChoice(str(self.query_one("#canary", Select).value), policy)
