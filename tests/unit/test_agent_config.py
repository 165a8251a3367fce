"""configs/agent.toml: what it shows is the default, and its example host rules are valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import AgentConfig, ControllerSettings, load_agent_config
from serve.config_file import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "agent.toml"


def test_the_shipped_file_is_the_defaults():
    assert load_agent_config(SHIPPED) == AgentConfig()


def test_the_example_host_rules_parse_once_uncommented(tmp_path):
    text = SHIPPED.read_text().replace("# [[controller.alerts]]", "[[controller.alerts]]")
    text = re.sub(r"^# (name|kind|for|window_s|threshold|actions) ", r"\1 ", text, flags=re.M)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    rules = load_agent_config(path).controller.alerts
    assert [r.kind for r in rules] == ["agent_down", "gpu_xid", "gpu_throttle", "spool_drops"]
    assert rules[1].actions[0].webhook == "https://alerts.example/hook"  # type: ignore[union-attr]


def test_host_rules_are_checked():
    rule = {"name": "down", "kind": "agent_down"}
    with pytest.raises(ValidationError, match="unique"):
        ControllerSettings.model_validate({"alerts": [rule, rule]})
    with pytest.raises(ValidationError, match="rollout"):  # no rollout actions on a host
        ControllerSettings.model_validate({"alerts": [{**rule, "actions": [{"rollout": "pause"}]}]})
    with pytest.raises(ValidationError):
        ControllerSettings.model_validate({"alerts": [{**rule, "kind": "disk_full"}]})


def test_a_bad_file_names_itself(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[[controller.alerts]]\nname = "x"\nkind = "gpu_xid"\nfor = -1\n')
    with pytest.raises(ConfigError, match=r"agent\.toml"):
        load_agent_config(path)
