"""The trackside console: a Textual app over every host's agent.

The app keeps the sources and what their pollers fetched (one worker per host, posting
`HostPolled`), navigation between screens, and the one registry of actions (console/
actions.py) that drives keys, help, the palette and the `:` command line. Each screen loads
what only it needs and implements its own actions.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from typing import ClassVar

from textual.app import App, ComposeResult, ScreenStackError, SystemCommand
from textual.binding import BindingType
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable

from console import actions
from console.poller import HostSnapshot, poll_forever
from console.screens.alerts import AlertsScreen
from console.screens.audit import AuditScreen
from console.screens.base import ConsoleScreen
from console.screens.drift import DriftScreen
from console.screens.fleet import FleetScreen
from console.screens.jobs import JobsScreen
from console.screens.models import ModelsScreen
from console.screens.requests import RequestsScreen
from console.screens.rollout import RolloutScreen
from console.sources import HostSource
from console.state import ConsoleState
from console.widgets.command_line import CommandLine

SCREENS: tuple[type[ConsoleScreen], ...] = (
    FleetScreen,
    ModelsScreen,
    RequestsScreen,
    DriftScreen,
    RolloutScreen,
    AlertsScreen,
    JobsScreen,
    AuditScreen,
)


class HostPolled(Message):
    def __init__(self, snapshot: HostSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > DataTable { width: auto; max-width: 95%; height: auto; max-height: 90%;
                             border: thick $accent; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(cursor_type="none")
        table.add_columns("KEY", "COMMAND", "ACTION", "WHERE", "WHAT")
        for a in actions.ACTIONS:
            where = {actions.APP: "everywhere", actions.ANY_SCREEN: "every screen"}.get(
                a.target, a.target
            )
            command = f":{a.usage}" if a.word in actions.BY_WORD else ""
            table.add_row(
                actions.key_text(a.key),
                command,
                a.title,
                where,
                a.help + (" (writes)" if a.writes else ""),
            )
        yield table


class TracksideConsole(App[None]):
    TITLE = "trackside"
    CSS = "ConsoleScreen { background: $surface; }"
    BINDINGS: ClassVar[list[BindingType]] = list(actions.bindings(actions.APP))
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self, sources: list[HostSource], readonly: bool = False, poll_interval_s: float = 2.0
    ) -> None:
        super().__init__()
        self.sources = sources
        self.state = ConsoleState(sources=list(sources), readonly=readonly)
        self.poll_interval_s = poll_interval_s
        self.console_screens: dict[str, ConsoleScreen] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self._bindings_signature: tuple[str, tuple[str, ...]] | None = None
        self._dirty = False

    # -- screens ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        for kind in SCREENS:
            screen = kind(self.state)
            self.console_screens[screen.screen_name] = screen
            self.install_screen(screen, name=screen.screen_name)
        self.sub_title = "read-only" if self.state.readonly else ""
        self.set_interval(0.25, self._redraw_if_dirty)
        self.push_screen("fleet")
        # What exists now (Textual, Rich, our modules: hundreds of thousands of objects)
        # lives as long as the app; keep it out of the collector's full passes, which
        # otherwise stall a redraw for ~100 ms every so often.
        gc.freeze()
        for source in self.sources:
            self.wake[source.name] = asyncio.Event()
            self.run_worker(
                poll_forever(
                    source, self._post_snapshot, self.poll_interval_s, wake=self.wake[source.name]
                ),
                name=f"poll:{source.name}",
                group="pollers",
                exit_on_error=False,
            )

    def _post_snapshot(self, snapshot: HostSnapshot) -> None:
        self.post_message(HostPolled(snapshot))

    def on_host_polled(self, message: HostPolled) -> None:
        # Many hosts answer every interval: redraw at most every 250 ms, not once per host.
        self.state.hosts[message.snapshot.name] = message.snapshot
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._dirty = False
            self.refresh_screen()

    def current(self) -> ConsoleScreen | None:
        if not self.is_running:  # closing: a worker finished after the screens went
            return None
        try:
            screen = self.screen
        except ScreenStackError:
            return None
        return screen if isinstance(screen, ConsoleScreen) else None

    def refresh_screen(self) -> None:
        """Redraw the screen in front from the latest data."""
        screen = self.current()
        if screen is None:
            return
        if screen.is_mounted:
            screen.show()
        self.sub_title = self.banner()
        # Recomputing the footer costs ~70 ms: only when what actions allow has changed.
        ctl = self.state.controller()
        signature = (ctl.name, tuple(ctl.paths)) if ctl else None
        if signature != self._bindings_signature:
            self._bindings_signature = signature
            self.refresh_bindings()

    def banner(self) -> str:
        """The header's line: read-only, and any alert firing, wherever the operator is."""
        parts = ["read-only"] if self.state.readonly else []
        page = self.state.alerts()
        if page is not None and page.firing:
            first = page.firing[0]
            more = f" (+{len(page.firing) - 1} more, l lists them)" if len(page.firing) > 1 else ""
            parts.append(f"⚠ ALERT {first.rule} on {first.subject}{more}")
        return " · ".join(parts)

    def action_show(self, name: str, *args: str) -> None:
        if isinstance(self.screen, ModalScreen):
            return
        screen = self.console_screens[name]
        if args:
            screen.select(*args)
        if self.screen is screen:
            screen.load()
            screen.show()
        else:
            self.switch_screen(name)  # the screen loads and draws when it resumes

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """For the app's own bindings, and for anyone asking about a screen's action: what
        the screen in front says (False when it is another screen's action)."""
        entry = actions.BY_NAME.get(action)
        if entry is None or entry.target == actions.APP:
            return True
        current = self.current()
        if current is None or entry.target not in (current.screen_name, actions.ANY_SCREEN):
            return False
        return current.check_action(action, parameters)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for word, a in actions.BY_WORD.items():
            if a.target not in (actions.APP, actions.ANY_SCREEN) and not self._allowed(a):
                continue
            yield SystemCommand(f":{word}", a.help, lambda w=word: self.run_command(w))

    # -- app actions ------------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        """Poll every host now: each poller wakes early; none is restarted or doubled."""
        for event in self.wake.values():
            event.set()
        current = self.current()
        if current is not None:
            current.load()

    def action_command_line(self) -> None:
        if isinstance(self.screen, ModalScreen):
            return

        def done(text: str | None) -> None:
            if text:
                self.run_command(text)

        self.push_screen(CommandLine(self.state.models), done)

    def _allowed(self, a: actions.ConsoleAction) -> bool:
        return actions.allowed(a.name, self.state.readonly, self.state.offers) is True

    def run_command(self, text: str) -> None:
        """`word args...` from the command line: the registry says which screen runs it."""
        word, *args = text.split()
        entry = actions.BY_WORD.get(word)
        if entry is None:
            self.notify(f"unknown command :{word}; ? lists them", severity="error", markup=False)
            return
        if len(args) > len(entry.args):
            self.notify(f"usage: :{entry.usage}", severity="error", markup=False)
            return
        if entry.target == actions.APP:
            if entry.command in self.console_screens:
                self.action_show(entry.command, *args)
            else:
                getattr(self, f"action_{entry.name}")(*args)
            return
        if entry.target == actions.ANY_SCREEN:
            current = self.current()
            if current is not None:
                getattr(current, f"action_{entry.name}")(*args)
            return
        if not self._allowed(entry):
            why = "read-only" if self.state.readonly else f"the agent lacks {entry.requires}"
            self.notify(f":{word} is not available ({why})", severity="warning", markup=False)
            return
        self.action_show(entry.target)
        screen = self.console_screens[entry.target]
        # After the switch, so the action sees the screen it acts on.
        self.call_after_refresh(getattr(screen, f"action_{entry.name}"), *args)
