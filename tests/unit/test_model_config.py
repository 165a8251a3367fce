import pytest

from serve.model_config import ConfigError, load_model_config, parse_model_config


def test_demo_config_loads(repo_root):
    config = load_model_config(repo_root / "configs/models/digits.toml")
    assert config.model == "digits"
    assert {"v1", "v2"} <= set(config.versions)
    assert config.options("v1").max_ongoing_requests >= config.options("v1").max_batch_size
    assert config.blessing["accuracy"].higher_is_better
    assert config.batch == []  # the example [[batch]] is commented out


def test_the_commented_batch_example_parses(repo_root):
    text = (repo_root / "configs/models/digits.toml").read_text()
    example = text[text.index("# [[batch]]") :].split("\n\n")[0]
    uncommented = "\n".join(line.removeprefix("# ") for line in example.splitlines())
    import tomllib

    data = tomllib.loads(text) | tomllib.loads(uncommented)
    (entry,) = parse_model_config(data).batch
    assert (entry.name, entry.version, entry.cron) == ("nightly", "best:accuracy", "30 0 * * *")


def test_versions_override_defaults_key_by_key():
    config = parse_model_config(
        {
            "model": "m",
            "defaults": {"num_cpus": 0.5, "autoscaling": {"min_replicas": 1, "max_replicas": 3}},
            "versions": {"v2": {"num_gpus": 1, "autoscaling": {"max_replicas": 5}}},
        }
    )
    v2 = config.options("v2")
    assert v2.num_cpus == 0.5 and v2.num_gpus == 1
    assert (v2.autoscaling.min_replicas, v2.autoscaling.max_replicas) == (1, 5)
    assert config.options("unlisted").num_cpus == 0.5


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"model": "../m"}, "not allowed"),
        ({"model": "m", "defaults": {"num_cpus": 0}}, "num_cpus"),
        ({"model": "m", "defaults": {"typo_option": 1}}, "typo_option"),
        ({"model": "m", "defaults": {"accelerator": "tpu"}}, "accelerator"),
        (
            {
                "model": "m",
                "defaults": {"request_timeout_s": 40, "graceful_shutdown_timeout_s": 30},
            },
            "graceful_shutdown_timeout_s must exceed",
        ),
        (
            {"model": "m", "defaults": {"autoscaling": {"min_replicas": 4, "max_replicas": 2}}},
            "min_replicas",
        ),
        ({"model": "m", "versions": {"router": {}}}, "reserved"),
        (
            {
                "model": "m",
                "batch": [{"name": "n", "input": "i", "output": "o", "cron": "0 25 * * *"}],
            },
            "hour: '25' is outside 0-23",
        ),
        (
            {"model": "m", "batch": [{"name": "n", "input": "i", "output": "o"}] * 2},
            "missing",
        ),
        (
            {
                "model": "m",
                "batch": [{"name": "n", "input": "i", "output": "o", "cron": "0 0 * * *"}] * 2,
            },
            "a name of its own",
        ),
    ],
)
def test_bad_configs_name_the_setting(data, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_model_config(data, "test.toml")


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_model_config(bad)
