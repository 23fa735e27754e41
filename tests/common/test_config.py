"""Settings: one frozen object from config.yaml + environment, bad values named."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from common.config import (
    CONFIG_PATH_ENV,
    ENV_OVERRIDES,
    ConfigError,
    QueueSettings,
    Settings,
    load_settings,
    validate,
)
from tests.support.procs import ROOT


def test_defaults_from_project_config_yaml():
    s = load_settings(environ={})
    assert s.server.port == 8003
    assert s.queue.max_size == 100
    assert s.workers.count == 2
    assert s.segmentation.engine == "auto"
    assert s.segmentation.schp.labels["atr"].upper == (4, 7)
    assert s.segmentation.schp.labels["atr"].lower == (5, 6, 7)
    assert s.upload.secret is None and s.upload.url is None  # no secret baked into a default


def test_environment_overrides_and_types():
    s = load_settings(environ={"PORT": "9001", "QUEUE_MAX_SIZE": "7", "WORKER_COUNT": "3",
                               "SCHP_DEVICE": "cpu", "SEGMENTATION_ENGINE": "parser",
                               "MASK_ASSET_URL": "https://assets.example/masks",
                               "MASK_COMPONENT_SECRET": "s3cret-value", "LOG_LEVEL": "debug",
                               "WORKER_INLINE_IMAGES": "true"})
    assert (s.server.port, s.queue.max_size, s.workers.count) == (9001, 7, 3)
    assert s.workers.device == "cpu" and s.segmentation.engine == "parser"
    assert s.workers.inline_images is True
    assert s.upload.secret == "s3cret-value"
    assert "s3cret-value" not in repr(s)


def test_settings_are_frozen() -> None:
    s = load_settings(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server.port = 1  # type: ignore[misc]


def test_relative_paths_resolve_against_config_dir(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("paths:\n  temp_folder: t\n")
    s = load_settings(cfg, environ={"STATE_DIR": "/abs/state"})
    assert s.temp_folder == tmp_path / "t"
    assert s.state_dir == Path("/abs/state")


def test_config_path_from_environment(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: 1234\n")
    assert load_settings(environ={"SCHP_CONFIG_PATH": str(cfg)}).server.port == 1234


@pytest.mark.parametrize("env, named", [
    ({"PORT": "eighty"}, "server.port"),
    ({"PORT": "70000"}, "server.port"),
    ({"QUEUE_MAX_SIZE": "0"}, "queue.max_size"),
    ({"WORKER_COUNT": "-1"}, "workers.count"),
    ({"SCHP_DEVICE": "tpu"}, "workers.device"),
    ({"SEGMENTATION_ENGINE": "magic"}, "segmentation.engine"),
    ({"MASK_ASSET_URL": "ftp://x"}, "upload.url"),
    ({"LOG_LEVEL": "LOUD"}, "logging.level"),
    ({"WORKER_INLINE_IMAGES": "maybe"}, "workers.inline_images"),
    ({"BROKER_FRONTEND_ENDPOINT": "localhost:5555"}, "broker.frontend_endpoint"),
])
def test_bad_values_stop_startup_naming_the_setting(env, named):
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert named in str(err.value)


def test_unknown_key_and_bad_labels_are_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  prot: 1\n")
    with pytest.raises(ConfigError, match="server.prot: unknown setting"):
        load_settings(cfg, environ={})
    cfg.write_text("segmentation:\n  schp:\n    labels:\n      atr: {upper: [4, x], lower: []}\n")
    with pytest.raises(ConfigError, match="segmentation.schp.labels.atr.upper"):
        load_settings(cfg, environ={})


def test_missing_or_broken_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, environ={})


def test_curve_needs_its_key_files():
    with pytest.raises(ConfigError, match="server_secret_key_file"):
        load_settings(environ={"BROKER_CURVE": "true"})


def test_settings_type_is_the_one_object():
    assert isinstance(load_settings(environ={}), Settings)


@pytest.mark.parametrize("value", ["null", "~", "true", "0x1F", "0123", "12:30", "1_000", "1.50"])
def test_string_settings_from_the_environment_are_taken_verbatim(value):
    # API_KEY=null used to switch the key off (YAML null); 0x1F became "31", 12:30 "750".
    s = load_settings(environ={"API_KEY": value, "MASK_COMPONENT_SECRET": value,
                               "WORKER_GPUS": "0,1", "HOST": "127.0.0.1"})
    assert s.server.api_key == value
    assert s.upload.secret == value


@pytest.mark.parametrize("env, named", [
    ({"MAX_UPLOAD_MB": ".inf"}, "server.max_upload_mb"),
    ({"UPLOAD_BACKOFF_BASE_S": ".inf"}, "upload.backoff_base_s"),
    ({"JOB_DEADLINE_S": ".nan"}, "queue.job_deadline_s"),
    ({"HEARTBEAT_INTERVAL_S": ".inf"}, "broker.heartbeat_interval_s"),
])
def test_non_finite_numbers_are_refused(env, named):
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert named in str(err.value)


def test_an_empty_api_key_is_refused(tmp_path):
    # "" would require an empty X-API-Key header, i.e. no key at all, while the service
    # logs api_key_required=true.
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  api_key: ''\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert "server.api_key" in str(err.value)


def test_version_matches_pyproject():
    import tomllib

    from common import VERSION
    from tests.support.procs import ROOT
    assert VERSION == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_no_worker_grace_is_a_setting():
    import pytest

    from common.config import ConfigError, load_settings
    assert load_settings(environ={}).queue.no_worker_grace_s == 60.0
    assert load_settings(environ={"NO_WORKER_GRACE_S": "5"}).queue.no_worker_grace_s == 5.0
    with pytest.raises(ConfigError, match="NO_WORKER_GRACE_S"):
        load_settings(environ={"NO_WORKER_GRACE_S": "-1"})


def test_every_setting_the_specification_names_is_honoured_under_that_name(tmp_path):
    from common.config import load_settings
    config = tmp_path / "own.yaml"
    config.write_text("queue:\n  max_size: 7\n")
    env = {"HOST": "127.0.0.2", "PORT": "8123", "QUEUE_MAX_SIZE": "42", "WORKER_COUNT": "3",
           "MASK_ASSET_URL": "https://assets.example/masks",
           "MASK_COMPONENT_SECRET": "spec-secret-0123456", "TEMP_FOLDER": "/srv/qmc-tmp",
           "LOG_LEVEL": "DEBUG", "SCHP_DEVICE": "cpu", "SCHP_CONFIG_PATH": str(config)}
    s = load_settings(environ=env)
    assert (s.server.host, s.server.port, s.queue.max_size, s.workers.count) == \
        ("127.0.0.2", 8123, 42, 3)
    assert (s.upload.url, s.upload.secret) == ("https://assets.example/masks",
                                               "spec-secret-0123456")
    assert (str(s.temp_folder), s.logging.level, s.workers.device) == ("/srv/qmc-tmp", "DEBUG", "cpu")
    assert load_settings(environ={"SCHP_CONFIG_PATH": str(config)}).queue.max_size == 7
    # and the defaults the deployment gets without any of them
    d = load_settings(environ={})
    assert (d.server.port, d.upload.url, d.upload.secret) == (8003, None, None)


def test_the_built_in_defaults_are_valid_and_are_what_config_yaml_gives():
    validate(Settings())
    assert dataclasses.replace(load_settings(environ={}), base_dir=".") == Settings()


def test_config_yaml_shows_every_setting_at_its_default():
    # config.yaml is the defaults, commented out: uncommenting every line once must
    # give exactly the built-in defaults, every setting included.
    lines = (ROOT / "config.yaml").read_text().splitlines()
    shown = yaml.safe_load("\n".join(line.removeprefix("#") for line in lines))
    defaults = json.loads(json.dumps(dataclasses.asdict(Settings())))  # tuples -> lists
    del defaults["base_dir"]
    assert shown == defaults


def test_a_file_changes_only_what_it_sets(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\nsegmentation:\n  schp:\n    labels:\n      atr:\n"
                   "        upper: [4, 7, 17]\n")
    s = load_settings(cfg, environ={})
    assert s.server == Settings().server  # a section left empty keeps its defaults
    assert s.segmentation.schp.labels["atr"].upper == (4, 7, 17)
    assert s.segmentation.schp.labels["atr"].lower == (5, 6, 7)
    assert s.segmentation.schp.labels["lip"] == Settings().segmentation.schp.labels["lip"]
    cfg.write_text("server: 5\n")
    with pytest.raises(ConfigError, match="server: must be a mapping"):
        load_settings(cfg, environ={"PORT": "8004"})


def test_validate_checks_settings_however_they_were_made() -> None:
    with pytest.raises(ConfigError, match=r"queue.max_size \(QUEUE_MAX_SIZE\): must be at least 1"):
        validate(Settings(queue=QueueSettings(max_size=0)))
    with pytest.raises(ConfigError, match="queue.max_size .*must be a whole number"):
        validate(Settings(queue=QueueSettings(max_size="7")))  # type: ignore[arg-type]


def test_a_worker_server_key_needs_the_worker_secret_key():
    with pytest.raises(ConfigError, match=r"workers.curve_secret_key_file \(WORKER_CURVE_SECRET_FILE"
                                          r"\): must be set with workers.curve_server_key_file"):
        load_settings(environ={"WORKER_CURVE_SERVER_KEY_FILE": "broker.key"})


def test_the_readme_lists_every_environment_variable_and_no_other():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| Environment | config.yaml |"):]
    table = table[:table.index("\n\n")]
    named = {var for row in table.splitlines()[2:]
             for var in re.findall(r"`([A-Z0-9_]+)`", row.split("|")[1])}
    assert named == set(ENV_OVERRIDES) | {CONFIG_PATH_ENV}
    for var, dotted in ENV_OVERRIDES.items():  # and each beside its own setting
        [row] = [r for r in table.splitlines() if f"`{var}`" in r.split("|")[1]]
        assert f"`{dotted}`" in row.split("|")[2], var
