"""What every console screen shares: the state handed down by the app, its key bindings (from
the one registry), the `/` filter, `show()` to redraw from data and `load()` to fetch what
only this screen needs (its own workers, posting messages it handles itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input

from console import actions
from console.state import ConsoleState

if TYPE_CHECKING:
    from agent.client import AsyncAgentClient


class FilterInput(Input):
    """The `/` filter of a table screen: hidden until asked for; Enter applies, Esc clears."""

    DEFAULT_CSS = "FilterInput { height: 3; }"

    def __init__(self, placeholder: str = "filter rows (Enter applies, Esc clears)") -> None:
        super().__init__(placeholder=placeholder, id="filter")
        self.display = False


class ConsoleScreen(Screen[None]):
    screen_name: ClassVar[str] = ""
    main: ClassVar[str] = ""  # the selector of the widget that has the focus
    BINDINGS: ClassVar[list[BindingType]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Before Textual's own __init_subclass__, which merges the class's BINDINGS.
        if cls.screen_name:
            bound: list[BindingType] = list(actions.bindings(cls.screen_name))
            bound.append(Binding("escape", "clear_filter", show=False))
            cls.BINDINGS = bound
        # Textual's auto-focus would pick the first focusable widget, even a hidden filter.
        cls.AUTO_FOCUS = cls.main or ""
        super().__init_subclass__(**kwargs)

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(name=self.screen_name)
        self.state = state
        self.filter_text = ""

    # -- drawing and loading --------------------------------------------------------------------
    def show(self) -> None:
        """Redraw from the latest snapshots (the app calls it on every update)."""

    def load(self) -> None:
        """Fetch what this screen shows beyond the polled snapshots (on entry, on refresh)."""

    def select(self, *args: str) -> None:
        """What the command line's arguments choose, e.g. `:drift digits v2`."""

    def on_screen_resume(self) -> None:
        self.load()
        self.show()

    def redraw(self) -> None:
        if self.is_mounted and self.is_current:
            self.show()

    def focus_main(self) -> None:
        if self.main:
            self.query_one(self.main).focus()

    @property
    def controller(self) -> AsyncAgentClient | None:
        return self.state.controller_client()

    # -- actions ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return actions.allowed(action, self.state.readonly, self.state.offers)

    def action_filter(self) -> None:
        for field in self.query(Input):
            if field.id in ("filter", "filters"):
                field.display = True
                field.focus()
                return

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip()
            event.input.display = False
            self.focus_main()
            self.show()

    def action_clear_filter(self) -> None:
        field = self.query("#filter").first(Input) if self.query("#filter") else None
        if field is not None and (field.display or self.filter_text):
            field.value = ""
            field.display = False
            self.filter_text = ""
            self.focus_main()
            self.show()

    def matches(self, *cells: object) -> bool:
        """Whether a row with these cells passes the `/` filter (case-insensitive)."""
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in str(c).lower() for c in cells)
