"""The `:` command line (k9s' habit): `:models`, `:drift digits v2`, `:promote digits v2`.
Words come from the one action registry; models and versions from the controller's state.
The suggestion completes the word under the cursor (Right or Tab accepts it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static

from agent.client import ModelStatus
from console import actions


def completions(words: list[str], models: list[ModelStatus]) -> list[str]:
    """What may come next after `words` (the words typed before the one being typed)."""
    if not words:
        return sorted(actions.BY_WORD)
    entry = actions.BY_WORD.get(words[0])
    if entry is None or len(words) > len(entry.args):
        return []
    wanted = entry.args[len(words) - 1]
    if wanted == "model":
        return [m.model for m in models]
    if wanted == "version":
        model = next((m for m in models if len(words) > 1 and m.model == words[1]), None)
        return [v.version for v in model.versions] if model else []
    return []


def complete(text: str, models: list[ModelStatus]) -> str | None:
    """`text` with its last word completed, or None when nothing fits."""
    words = text.split(" ")
    done, partial = [w for w in words[:-1] if w], words[-1]
    for option in completions(done, models):
        if option.startswith(partial) and option != partial:
            return text[: len(text) - len(partial)] + option
    return None


class RegistrySuggester(Suggester):
    def __init__(self, models: Callable[[], list[ModelStatus]]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.models = models

    async def get_suggestion(self, value: str) -> str | None:
        return complete(value, self.models())


class CommandLine(ModalScreen[str | None]):
    """A one-line prompt at the bottom; Enter runs the command, Escape cancels."""

    DEFAULT_CSS = """
    CommandLine { align: left bottom; background: $background 40%; }
    CommandLine > Static { width: 100%; height: auto; background: $boost; padding: 0 1; }
    CommandLine > Input { width: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("tab", "accept", "Complete", show=False, priority=True),
    ]

    def __init__(self, models: Callable[[], list[ModelStatus]]) -> None:
        super().__init__()
        self.models = models

    def compose(self) -> ComposeResult:
        usage = "  ".join(f":{a.usage}" for a in actions.BY_WORD.values())
        yield Static(usage, id="usage", markup=False)
        yield Input(placeholder=":", id="command", suggester=RegistrySuggester(self.models))

    def on_mount(self) -> None:
        self.query_one("#command", Input).focus()

    def action_accept(self) -> None:
        field = self.query_one("#command", Input)
        completed = complete(field.value, self.models())
        if completed is not None:
            field.value = completed + " "
            field.cursor_position = len(field.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip().lstrip(":").strip() or None)
