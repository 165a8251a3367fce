"""The trackside console: a Textual app over every host's agent.

Workers (one per host) fetch and post `HostPolled` messages; the app keeps the data and hands
it down to the active screen. Actions come from one registry (console/actions.py).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input

from agent.client import AgentError
from console import actions
from console.poller import HostSnapshot, poll_forever
from console.screens.audit import AuditScreen
from console.screens.base import ConsoleScreen
from console.screens.drift import BUCKETS, DriftScreen
from console.screens.fleet import FleetScreen
from console.screens.models import ModelsScreen
from console.screens.requests import RequestsScreen
from console.screens.rollout import RolloutScreen
from console.sources import HostSource
from console.state import ConsoleState
from console.widgets.modals import ConfirmTyped, ReplayForm, RolloutForm, TrafficForm


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
    BINDINGS: ClassVar = [("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = DataTable(cursor_type="none")
        table.add_columns("KEY", "ACTION", "WHERE", "WHAT")
        for a in actions.ACTIONS:
            where = ", ".join(a.screens) if a.screens else "everywhere"
            table.add_row(
                a.key.replace("question_mark", "?").replace("slash", "/"),
                a.title,
                where,
                a.help + (" (writes)" if a.writes else ""),
            )
        yield table


class TracksideConsole(App):
    TITLE = "trackside"
    CSS = "Screen { background: $surface; }"
    BINDINGS: ClassVar[list[Binding]] = actions.bindings()
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self, sources: list[HostSource], readonly: bool = False, poll_interval_s: float = 2.0
    ) -> None:
        super().__init__()
        self.sources = sources
        self.state = ConsoleState(readonly=readonly)
        self.poll_interval_s = poll_interval_s
        self.screens_by_name: dict[str, ConsoleScreen] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self._bindings_signature: tuple | None = None
        for source in sources:
            self.state.hosts[source.name] = HostSnapshot(name=source.name, address=source.address)

    # -- screens ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        for screen in (
            FleetScreen(),
            ModelsScreen(),
            RequestsScreen(),
            DriftScreen(),
            RolloutScreen(),
            AuditScreen(),
        ):
            self.screens_by_name[screen.screen_name] = screen
            self.install_screen(screen, name=screen.screen_name)
        self.sub_title = "read-only" if self.state.readonly else ""
        self._dirty = False
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
        screen = self.current()
        if screen is None:
            return
        if screen.is_mounted:
            screen.show(self.state)
        # Recomputing the footer costs ~70 ms: only when what actions allow has changed.
        ctl = self.state.controller()
        signature = (ctl.name, tuple(ctl.paths)) if ctl else None
        if signature != self._bindings_signature:
            self._bindings_signature = signature
            self.refresh_bindings()

    def action_show(self, name: str) -> None:
        if isinstance(self.screen, ModalScreen):
            return
        self.switch_screen(name)
        if name == "audit":
            self.load_audit()
        elif name == "requests":
            self.load_requests({})
        elif name == "drift":
            self.load_drift()
        elif name == "rollout":
            self.load_rollouts()
        self.call_after_refresh(self.refresh_screen)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        current = self.current()
        name = current.screen_name if current else ""
        return actions.allowed(action, parameters, name, self.state.readonly, self.state.offers)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for a in actions.ACTIONS:
            if a.name in ("help", "quit"):
                continue
            name, _, arg = a.name.partition("(")
            if self.check_action(name, (arg.strip("')"),) if arg else ()) is not True:
                continue
            yield SystemCommand(f":{a.title.lower()}", a.help, lambda a=a: self.run_action(a.name))

    # -- simple actions ---------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        """Poll every host now: each poller wakes early; none is restarted or doubled."""
        for event in self.wake.values():
            event.set()
        current = self.current()
        if current is not None and current.screen_name == "drift":
            self.load_drift()

    def action_drift_version(self) -> None:
        screen: DriftScreen = self.screens_by_name["drift"]  # type: ignore[assignment]
        screen.next_version(self.state)
        self.load_drift()

    def action_drift_window(self) -> None:
        screen: DriftScreen = self.screens_by_name["drift"]  # type: ignore[assignment]
        screen.next_window()
        self.load_drift()

    def action_filter(self) -> None:
        screen = self.current()
        if screen is None:
            return
        for field in screen.query(Input):
            field.display = True
            field.focus()
            return

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.state.filter = event.value.strip()
            self.refresh_screen()

    # -- model actions ------------------------------------------------------------------------
    def _client(self):
        ctl = self.state.controller()
        if ctl is None:
            return None
        for source in self.sources:
            if source.name == ctl.name:
                return getattr(source, "_client", None)
        return None

    def _models_screen(self) -> ModelsScreen:
        return self.screens_by_name["models"]  # type: ignore[return-value]

    def _report(self, text: str, error: bool = False) -> None:
        shown = escape(text)  # agents' messages quote versions, weights, anything
        self._models_screen().show_result(f"[red]{shown}[/]" if error else shown)
        self.notify(text, severity="error" if error else "information", timeout=6, markup=False)

    def _selected(self) -> tuple[str, str] | None:
        selected = self._models_screen().selected()
        if selected is None:
            self._report("select a version first", error=True)
        return selected

    def _model_status(self, model: str):
        for m in self.state.models():
            if m.model == model:
                return m
        return None

    def action_traffic(self) -> None:
        selected = self._selected()
        status = self._model_status(selected[0]) if selected else None
        if status is None:
            return

        def done(result: dict | None) -> None:
            if result is not None:
                self.run_action_call("set_traffic", status.model, result)

        self.push_screen(TrafficForm(status), done)

    def _confirm_then(self, question: str, phrase: str, verb: str, model: str, args: dict) -> None:
        """Ask for the typed phrase ("No" focused); only a confirmed action reaches the agent."""

        def done(ok: bool | None) -> None:
            if ok:
                self.run_action_call(verb, model, args)

        self.push_screen(ConfirmTyped(question, phrase), done)

    def action_promote(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        model, version = selected
        question = f"Promote [b]{model}/{version}[/b]: 100% of traffic, and it becomes stable."
        self._confirm_then(question, version, "promote", model, {"version": version})

    def action_rollback(self) -> None:
        selected = self._selected()
        status = self._model_status(selected[0]) if selected else None
        if status is None:
            return
        if not status.previous_stable:
            self._report(
                f"{status.model} has no previous stable version to roll back to", error=True
            )
            return
        target = status.previous_stable[-1]
        question = f"Roll back [b]{status.model}[/b] from {status.stable} to {target} (100%)."
        self._confirm_then(question, target, "rollback", status.model, {"to": target})

    def action_retire(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        model, version = selected
        question = f"Retire [b]{model}/{version}[/b]."
        self._confirm_then(question, version, "retire", model, {"version": version})

    def action_replay(self) -> None:
        screen = self.current()
        if not isinstance(screen, RequestsScreen) or screen.selected() is None:
            self.notify("select a logged request to replay", severity="warning")
            return
        _, row = screen.selected()
        status = self._model_status(row.model)
        if status is None:
            self.notify(f"{row.model} is not deployed on the controller", severity="warning")
            return
        listed = [
            r.request_id for _, r in screen.rows if r.model == row.model and r.role == "primary"
        ]

        def done(result: dict | None) -> None:
            if result is not None:
                self.run_replay(row.model, result["version"], result["ids"])

        versions = [v.version for v in status.versions]
        self.push_screen(
            ReplayForm(row.model, versions, row.version or "", row.request_id, listed), done
        )

    @work(exclusive=True, group="replay")
    async def run_replay(self, model: str, version: str, ids: list[str]) -> None:
        """Start the job on the controller, then follow it until its report is final."""
        screen: RequestsScreen = self.screens_by_name["requests"]  # type: ignore[assignment]
        client = self._client()
        if client is None:
            self._report("no controller agent connected", error=True)
            return
        try:
            report = await client.replay(model, version, ids)
            screen.replay, screen.replay_error = report, None
            self.refresh_screen()
            while report.state == "running":
                await asyncio.sleep(0.5)
                report = await client.replay_report(report.id)
                screen.replay = report
                self.refresh_screen()
        except AgentError as exc:
            screen.replay_error = f"replay of {model} against {version} refused: {exc.message}"
        self.refresh_screen()

    # -- rollouts ---------------------------------------------------------------------------
    def _rollout_screen(self) -> RolloutScreen:
        return self.screens_by_name["rollout"]  # type: ignore[return-value]

    def action_rollout_start(self) -> None:
        screen = self._rollout_screen()
        status = self._model_status(screen.model or "")
        if status is None:
            self.notify("no deployed model to roll out", severity="warning")
            return
        candidates = [v.version for v in status.versions if v.version != status.stable]
        if not candidates:
            screen.note = f"[red]{status.model} has no deployed version besides stable[/]"
            self.refresh_screen()
            return

        def done(result: dict | None) -> None:
            if result is not None:
                self.run_rollout_call("start", status.model, result)

        self.push_screen(RolloutForm(status.model, status.stable, candidates), done)

    def action_rollout_pause(self) -> None:
        self.run_rollout_call("pause", self._rollout_screen().model or "", {})

    def action_rollout_resume(self) -> None:
        self.run_rollout_call("resume", self._rollout_screen().model or "", {})

    def action_rollout_abort(self) -> None:
        r = self._rollout_screen().current()
        if r is None or r.state not in ("running", "paused"):
            self.notify("no rollout in progress", severity="warning")
            return

        def done(ok: bool | None) -> None:
            if ok:
                self.run_rollout_call("abort", r.model, {})

        question = (
            f"Abort the rollout of [b]{r.model}[/b]: all traffic back to {r.stable}"
            f" (the canary {r.canary} has {r.policy.steps[r.step]}%)."
        )
        self.push_screen(ConfirmTyped(question, r.canary), done)

    @work(exclusive=False, group="actions")
    async def run_rollout_call(self, verb: str, model: str, args: dict) -> None:
        screen = self._rollout_screen()
        client = self._client()
        if client is None:
            screen.note = "[red]no controller agent connected[/]"
            self.refresh_screen()
            return
        try:
            if verb == "start":
                canary = args.pop("canary")
                r = await client.rollout_start(model, canary, **args)
            else:
                r = await client.rollout_verb(model, verb)
            screen.note = escape(
                f"rollout {verb} {model}: {r.state}" + (f" ({r.reason})" if r.reason else "")
            )
        except AgentError as exc:
            screen.note = f"[red]{escape(f'rollout {verb} {model} refused: {exc.message}')}[/]"
        self.refresh_screen()
        self.load_rollouts()

    @work(exclusive=True, group="rollouts")
    async def load_rollouts(self) -> None:
        screen = self._rollout_screen()
        client = self._client()
        if client is None or not self.state.offers(screen.path):
            return
        try:
            screen.rollouts = await client.rollouts()
        except AgentError as exc:
            screen.note = f"[red]{escape(f'rollouts: {exc.message}')}[/]"
        self.refresh_screen()

    @work(exclusive=False, group="actions")
    async def run_action_call(self, verb: str, model: str, args: dict) -> None:
        client = self._client()
        if client is None:
            self._report("no controller agent connected", error=True)
            return
        try:
            if verb == "set_traffic":
                result = await client.set_traffic(
                    model, args["weights"], shadow=args["shadow"], fallback=args["fallback"]
                )
            elif verb == "promote":
                result = await client.promote(model, args["version"])
            elif verb == "rollback":
                result = await client.rollback(model, args["to"])
            else:
                result = await client.retire(model, args["version"])
        except AgentError as exc:
            self._report(f"{verb} {model} refused: {exc.message}", error=True)
            return
        before = (
            " ".join(f"{v}={w}" for v, w in sorted(result.before.weights.items()))
            if result.before
            else "-"
        )
        after = (
            " ".join(f"{v}={w}" for v, w in sorted(result.after.weights.items()))
            if result.after
            else "-"
        )
        self._report(
            f"{verb} {model}: {result.message} · {before} → {after} (audit #{result.audit_id})"
        )
        self.action_refresh()

    # -- data for the audit and requests screens --------------------------------------------
    @work(exclusive=True, group="audit")
    async def load_audit(self) -> None:
        screen: AuditScreen = self.screens_by_name["audit"]  # type: ignore[assignment]
        client = self._client()
        try:
            entries = await client.audit(limit=200) if client else []
            screen.error = None if client else "no controller agent connected"
        except AgentError as exc:
            entries, screen.error = [], exc.message
        screen.entries = entries
        self.refresh_screen()

    @work(exclusive=True, group="drift")
    async def load_drift(self) -> None:
        screen: DriftScreen = self.screens_by_name["drift"]  # type: ignore[assignment]
        client = self._client()
        if client is None or not self.state.offers(screen.path):
            self.refresh_screen()
            return
        screen.choose(self.state)
        if screen.model is None:
            return
        screen.loading = True
        self.refresh_screen()
        until = datetime.now(UTC)
        window = {
            "version": screen.version,
            "since": (until - timedelta(seconds=screen.window_s)).isoformat(),
            "until": until.isoformat(),
        }
        try:
            screen.report, screen.timeline = await asyncio.gather(
                client.drift(screen.model, **window),
                client.drift_timeline(screen.model, buckets=BUCKETS, **window),
            )
            screen.error = None
        except AgentError as exc:
            screen.error = f"drift of {screen.model} {screen.version}: {exc.message}"
        finally:
            screen.loading = False
        self.refresh_screen()
        if screen.feature:
            self.load_drift_histogram()

    @work(exclusive=True, group="drift-histogram")
    async def load_drift_histogram(self) -> None:
        screen: DriftScreen = self.screens_by_name["drift"]  # type: ignore[assignment]
        client = self._client()
        report = screen.report
        inputs = {f.feature for f in report.features} if report else set()
        if client is None or report is None or screen.feature not in inputs:
            screen.histogram = None  # the predicted label has its test, not a histogram
            self.refresh_screen()
            return
        try:
            screen.histogram = await client.drift_histogram(
                screen.model,
                screen.feature,
                version=report.version,
                since=report.since.isoformat(),
                until=report.until.isoformat(),
            )
        except AgentError as exc:
            screen.error = f"histogram of {screen.feature}: {exc.message}"
        self.refresh_screen()

    @work(exclusive=True, group="requests")
    async def load_requests(self, filters: dict[str, str]) -> None:
        screen: RequestsScreen = self.screens_by_name["requests"]  # type: ignore[assignment]
        rows = []
        errors = []
        for source in self.sources:
            client = getattr(source, "_client", None)
            if client is None:
                continue
            try:
                rows += [(source.name, r) for r in await client.requests(limit=200, **filters)]
            except AgentError as exc:
                errors.append(f"{source.name}: {exc.message}")
        rows.sort(key=lambda hr: hr[1].ts, reverse=True)
        screen.rows = rows[:200]
        screen.error = "; ".join(errors) or None
        self.refresh_screen()

    @work(exclusive=True, group="request-detail")
    async def load_request_detail(self, host: str, request_id: str) -> None:
        screen: RequestsScreen = self.screens_by_name["requests"]  # type: ignore[assignment]
        source = next((s for s in self.sources if s.name == host), None)
        client = getattr(source, "_client", None) if source else None
        if client is None:
            return
        try:
            screen.detail = await client.request(request_id)
            screen.error = None
        except AgentError as exc:
            screen.error = exc.message
        self.refresh_screen()
