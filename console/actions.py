"""One registry of the console's actions: it drives the key bindings, the footer, the `?`
help screen and the command palette, so they can never disagree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class ConsoleAction:
    name: str  # the Textual action, e.g. "promote" → App.action_promote
    key: str
    title: str  # footer / palette text
    help: str
    writes: bool = False  # changes the fleet: greyed out with --readonly
    screens: tuple[str, ...] = ()  # empty: everywhere
    show_in_footer: bool = True
    requires: str | None = None  # an agent API path: greyed out until the agent offers it


ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("show('fleet')", "f", "Fleet", "every host: CPU, memory, GPUs, history"),
    ConsoleAction("show('models')", "m", "Models", "versions, traffic, replicas, latency"),
    ConsoleAction("show('requests')", "r", "Requests", "the request log, details, replay"),
    ConsoleAction("show('drift')", "d", "Drift", "per-feature drift of a version"),
    ConsoleAction("show('rollout')", "o", "Rollout", "the progressive rollout and its judge"),
    ConsoleAction("show('audit')", "a", "Audit", "every action: who, when, before → after"),
    ConsoleAction(
        "traffic",
        "t",
        "Traffic",
        "set weights, shadow and fallback",
        writes=True,
        screens=("models",),
    ),
    ConsoleAction(
        "promote",
        "p",
        "Promote",
        "give the selected version 100% and make it stable",
        writes=True,
        screens=("models",),
    ),
    ConsoleAction(
        "rollback",
        "b",
        "Rollback",
        "back to the previous stable version",
        writes=True,
        screens=("models",),
    ),
    ConsoleAction(
        "retire",
        "x",
        "Retire",
        "remove the selected version (no traffic)",
        writes=True,
        screens=("models",),
        show_in_footer=False,
    ),
    ConsoleAction(
        "drift_version",
        "v",
        "Version",
        "drift of the model's next version",
        screens=("drift",),
        requires="/v1/drift",
    ),
    ConsoleAction(
        "drift_window",
        "w",
        "Window",
        "drift over the last 15 min, 1 h, 6 h or 24 h",
        screens=("drift",),
        requires="/v1/drift",
    ),
    ConsoleAction(
        "replay",
        "y",
        "Replay",
        "replay the selected requests against a version",
        writes=True,
        screens=("requests",),
        requires="/v1/replay",
    ),
    ConsoleAction(
        "rollout_start",
        "s",
        "Start rollout",
        "start a progressive rollout",
        writes=True,
        screens=("rollout",),
        requires="/v1/rollouts",
    ),
    ConsoleAction(
        "rollout_pause",
        "z",
        "Pause",
        "pause the rollout",
        writes=True,
        screens=("rollout",),
        requires="/v1/rollouts",
    ),
    ConsoleAction(
        "rollout_resume",
        "u",
        "Resume",
        "resume the rollout",
        writes=True,
        screens=("rollout",),
        requires="/v1/rollouts",
    ),
    ConsoleAction(
        "rollout_abort",
        "k",
        "Abort",
        "abort the rollout and roll back",
        writes=True,
        screens=("rollout",),
        requires="/v1/rollouts",
    ),
    ConsoleAction("filter", "slash", "Filter", "filter the rows on this screen", screens=()),
    ConsoleAction("refresh", "ctrl+r", "Refresh", "poll every host now", show_in_footer=False),
    ConsoleAction("help", "question_mark", "Help", "this help"),
    ConsoleAction("quit", "q", "Quit", "leave the console"),
)

BY_NAME = {a.name: a for a in ACTIONS}


def bindings() -> list[Binding]:
    return [Binding(a.key, a.name, a.title, show=a.show_in_footer, tooltip=a.help) for a in ACTIONS]


def allowed(
    action: str,
    parameters: tuple[object, ...],
    screen: str,
    readonly: bool,
    offered: Callable[[str], bool] = lambda path: True,
) -> bool | None:
    """Textual's check_action: False hides, None greys out, True enables."""
    key = f"{action}({', '.join(repr(p) for p in parameters)})" if parameters else action
    entry = BY_NAME.get(key) or BY_NAME.get(action)
    if entry is None:
        return True
    if entry.screens and screen not in entry.screens:
        return False
    if entry.writes and readonly:
        return None
    if entry.requires and not offered(entry.requires):
        return None
    return True
