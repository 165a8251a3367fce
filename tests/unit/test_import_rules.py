"""DESIGN.md's import rules, checked on the source: only two kinds of import cross packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# serve/ modules with no Ray in them, which the agent may use.
PURE_SERVE = {
    "serve.names",
    "serve.manifest",
    "serve.model_store",
    "serve.model_config",
    "serve.serve_config",
    "serve.routing_table",  # the table the config builder writes into the router's config
    "serve.request_record",  # the spool contract the agent ingests
    "serve.config_file",  # the one TOML loader
    "serve.json_number",  # what a body's integer is
    "serve.replica_facts",  # what a replica tells its host's agent
    "serve.ray_token",  # Ray's cluster token, where Ray looks for it
    "serve.batch_contract",  # the spec and reports between the controller and a batch driver
    "serve.cron",  # a [[batch]] entry's schedule
    "serve.value_bins",  # the drift bin of a value, online and in a batch job
    "serve.batch_rows",  # an input row checked against the manifest (serve.validation's rules)
}
# What the console may reach through agent.client, transitively: the client itself, the API's
# typed bodies, and the agent's published defaults and fleet file. Never the agent's internals
# (store, controller, rollouts, analysis...).
CLIENT_SIDE = {"agent.client", "agent.defaults", "agent.fleet_file", "agent.schemas"}
# The `trackside` dispatcher hands each verb to its package's entry point.
CLI_ENTRY_POINTS = {"serve.store_cli", "agent.daemon", "agent.cli", "agent.token_cli"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", modules("agent"), ids=_module_name)
def test_agent_imports_no_ray_and_only_pure_serve_modules(path):
    for name in imports_of(path):
        assert name != "ray" and not name.startswith("ray."), f"{path} imports {name}"
        if name.startswith("serve.") and name.count(".") == 1:
            assert name in PURE_SERVE, f"{path} imports {name}, not a pure serve module"
        assert not name.startswith("console"), f"{path} imports {name}"


@pytest.mark.parametrize("path", modules("serve"), ids=_module_name)
def test_serve_imports_neither_agent_nor_console(path):
    for name in imports_of(path):
        assert not name.startswith(("agent", "console")), f"{path} imports {name}"


@pytest.mark.parametrize("path", sorted(ROOT.joinpath("serve").glob("*.py")), ids=_module_name)
def test_pure_serve_modules_stay_pure(path):
    if _module_name(path) not in PURE_SERVE:
        return
    for name in imports_of(path):
        assert name != "ray" and not name.startswith("ray."), f"{path} imports {name}"
        if name.startswith("serve.") and name.count(".") == 1:
            assert name in PURE_SERVE, f"pure {path} imports {name}"


@pytest.mark.parametrize("path", modules("console"), ids=_module_name)
def test_console_reaches_agents_only_through_the_client(path):
    allowed = {"agent.client"} | (CLI_ENTRY_POINTS if path.name == "cli.py" else set())
    for name in imports_of(path):
        assert name != "ray" and not name.startswith("ray."), f"{path} imports {name}"
        top = ".".join(name.split(".")[:2])
        if name.startswith(("agent.", "serve.")):
            assert top in allowed, f"{path} imports {name}"


def _project_module(name: str) -> Path | None:
    """The file of a project module named by an import (a package's __init__, or a module
    imported as `from package import module`)."""
    for candidate in (name, name.rpartition(".")[0]):
        if not candidate.startswith(("agent", "console", "serve")):
            continue
        path = ROOT.joinpath(*candidate.split("."))
        if path.with_suffix(".py").is_file():
            return path.with_suffix(".py")
        if (path / "__init__.py").is_file():
            return path / "__init__.py"
    return None


def test_the_client_pulls_in_no_agent_internals_transitively():
    seen: set[Path] = set()
    todo = [ROOT / "agent" / "client.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [p for name in imports_of(path) if (p := _project_module(name)) is not None]
    reached = {_module_name(p).removesuffix(".__init__") for p in seen}
    for name in reached:
        if name.startswith("agent"):
            assert name in CLIENT_SIDE or name.startswith("agent.schemas"), (
                f"console -> agent.client reaches {name}"
            )
        if name.startswith("serve"):
            assert name in PURE_SERVE, f"console -> agent.client reaches {name}"
    assert "agent.schemas.rollouts" in reached  # the walk did follow imports
