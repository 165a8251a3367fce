"""One registry of the console's actions. Each names the screen that implements it (or the
app); from it come the key bindings of the app and of every screen, the footer, the `?` help,
the command palette and the `:` command line, so they can never disagree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.binding import Binding

APP = "app"
ANY_SCREEN = "*"  # a target every console screen implements


@dataclass(frozen=True)
class ConsoleAction:
    name: str  # the Textual action: `action_<name>` on the target
    key: str
    title: str  # footer / palette text
    help: str
    target: str = APP  # the screen (its screen_name) that implements it, or the app
    writes: bool = False  # changes the fleet: greyed out with --readonly
    show_in_footer: bool = True
    requires: str | None = None  # an agent API path: greyed out until the agent offers it
    command: str | None = None  # the word of the `:` command line (default: the name)
    args: tuple[str, ...] = ()  # what the command line takes after the word, e.g. model

    @property
    def word(self) -> str:
        return self.command or self.name

    @property
    def usage(self) -> str:
        return " ".join([self.word, *(f"[{a}]" for a in self.args)])


def _show(screen: str, key: str, title: str, help: str, *args: str) -> ConsoleAction:
    """Switch to `screen`; on the command line, its args choose what the screen shows."""
    return ConsoleAction(f"show('{screen}')", key, title, help, command=screen, args=args)


ACTIONS: tuple[ConsoleAction, ...] = (
    _show("fleet", "f", "Fleet", "every host: CPU, memory, GPUs, history"),
    _show("models", "m", "Models", "versions, traffic, replicas, latency", "model"),
    _show("requests", "r", "Requests", "the request log, details, replay", "model", "version"),
    _show("drift", "d", "Drift", "per-feature drift of a version", "model", "version"),
    _show("rollout", "o", "Rollout", "the progressive rollout and its judge", "model"),
    _show("alerts", "l", "Alerts", "alerts firing and pending, and their history"),
    _show("jobs", "j", "Jobs", "batch jobs: progress, rows set aside, drift", "model"),
    _show("audit", "a", "Audit", "every action: who, when, before → after", "model", "time"),
    ConsoleAction(
        "traffic",
        "t",
        "Traffic",
        "set weights, shadow and fallback",
        target="models",
        writes=True,
        args=("model",),
    ),
    ConsoleAction(
        "promote",
        "p",
        "Promote",
        "give the selected version 100% and make it stable",
        target="models",
        writes=True,
        args=("model", "version"),
    ),
    ConsoleAction(
        "rollback",
        "b",
        "Rollback",
        "back to the previous stable version",
        target="models",
        writes=True,
        args=("model",),
    ),
    ConsoleAction(
        "retire",
        "x",
        "Retire",
        "remove the selected version (no traffic)",
        target="models",
        writes=True,
        show_in_footer=False,
        args=("model", "version"),
    ),
    ConsoleAction(
        "drift_version",
        "v",
        "Version",
        "drift of the model's next version",
        target="drift",
        requires="/v1/drift",
        command="drift-version",
    ),
    ConsoleAction(
        "drift_window",
        "w",
        "Window",
        "drift over the last 15 min, 1 h, 6 h or 24 h",
        target="drift",
        requires="/v1/drift",
        command="drift-window",
    ),
    ConsoleAction(
        "replay",
        "y",
        "Replay",
        "replay the selected requests against a version",
        target="requests",
        writes=True,
        requires="/v1/replay",
    ),
    ConsoleAction(
        "rollout_start",
        "s",
        "Start rollout",
        "start a progressive rollout",
        target="rollout",
        writes=True,
        requires="/v1/rollouts",
        command="rollout-start",
        args=("model", "version"),
    ),
    ConsoleAction(
        "rollout_pause",
        "z",
        "Pause",
        "pause the rollout",
        target="rollout",
        writes=True,
        requires="/v1/rollouts",
        command="rollout-pause",
        args=("model",),
    ),
    ConsoleAction(
        "rollout_resume",
        "u",
        "Resume",
        "resume the rollout",
        target="rollout",
        writes=True,
        requires="/v1/rollouts",
        command="rollout-resume",
        args=("model",),
    ),
    ConsoleAction(
        "rollout_abort",
        "k",
        "Abort",
        "abort the rollout and roll back",
        target="rollout",
        writes=True,
        requires="/v1/rollouts",
        command="rollout-abort",
        args=("model",),
    ),
    ConsoleAction(
        "batch_cancel",
        "c",
        "Cancel job",
        "cancel the selected running batch job",
        target="jobs",
        writes=True,
        requires="/v1/batch-jobs",
        command="batch-cancel",
    ),
    ConsoleAction("command_line", "colon", "Command", "type a command: :drift digits v2"),
    ConsoleAction("filter", "slash", "Filter", "filter the rows on this screen", target=ANY_SCREEN),
    ConsoleAction("refresh", "ctrl+r", "Refresh", "poll every host now", show_in_footer=False),
    ConsoleAction("help", "question_mark", "Help", "this help"),
    ConsoleAction("quit", "q", "Quit", "leave the console"),
)

BY_NAME = {a.name: a for a in ACTIONS}
BY_WORD = {a.word: a for a in ACTIONS if a.name not in ("help", "quit", "command_line")}


def bindings(target: str) -> list[Binding]:
    """The key bindings of the app, or of one screen (with the actions every screen has)."""
    targets = {target} if target == APP else {target, ANY_SCREEN}
    return [
        Binding(a.key, a.name, a.title, show=a.show_in_footer, tooltip=a.help)
        for a in ACTIONS
        if a.target in targets
    ]


def key_text(key: str) -> str:
    return key.replace("question_mark", "?").replace("slash", "/").replace("colon", ":")


def allowed(
    action: str,
    readonly: bool,
    offered: Callable[[str], bool] = lambda path: True,
) -> bool | None:
    """Textual's check_action: None greys out, True enables."""
    entry = BY_NAME.get(action)
    if entry is None:
        return True
    if entry.writes and readonly:
        return None
    if entry.requires and not offered(entry.requires):
        return None
    return True
