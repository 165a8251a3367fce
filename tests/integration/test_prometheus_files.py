"""The example Prometheus files in configs/prometheus/ are what promtool accepts: the scrape
config and the alert rules over trackside's series."""

from __future__ import annotations

from tests.promtool import run


def test_the_alert_rules_are_valid(repo_root):
    result = run("check", "rules", str(repo_root / "configs/prometheus/trackside-rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout, result.stdout


def test_the_scrape_config_is_valid(repo_root):
    config = repo_root / "configs/prometheus/prometheus.yml"
    result = run("check", "config", "--syntax-only", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
