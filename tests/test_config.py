"""Settings: defaults < config file < environment < explicit overrides, failing by name."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from indelible.config import SETTINGS, Settings, load_settings
from indelible.errors import ConfigError


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "indelible.toml"
    path.write_text(text)
    return path


def test_defaults_come_from_the_settings_table() -> None:
    settings = load_settings(environ={})
    for setting in SETTINGS:
        assert getattr(settings, setting.name) == setting.default
    assert settings.max_body_bytes == 8 * 1024 * 1024
    assert settings.max_events == 1000
    assert settings.auth_fail_limit == 10
    assert settings.auth_fail_window == 60.0
    assert settings.max_export_events == 1_000_000
    assert settings.max_state_events == 100_000


def test_every_setting_is_a_settings_field() -> None:
    assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)]


def test_file_values_are_applied_with_native_toml_types(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'data = "/srv/indelible"\nport = 9000\nauth_fail_window = 30\ncheckpoint_interval = 0.5\n',
    )
    settings = load_settings(environ={}, config_file=path)
    assert settings.data == "/srv/indelible"
    assert settings.port == 9000
    assert settings.auth_fail_window == 30.0
    assert isinstance(settings.auth_fail_window, float)
    assert settings.checkpoint_interval == 0.5
    assert settings.max_events == 1000


def test_file_strings_are_parsed_like_environment_values(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'max_events = "50"\n')
    assert load_settings(environ={}, config_file=path).max_events == 50


@pytest.mark.parametrize(
    ("file_value", "env_value", "override", "expected"),
    [
        (None, None, None, 1000),
        ("200", None, None, 200),
        ("200", "300", None, 300),
        ("200", "300", "400", 400),
        (None, "300", "400", 400),
        ("200", None, "400", 400),
    ],
)
def test_precedence_is_file_then_environment_then_overrides(
    tmp_path: Path,
    file_value: str | None,
    env_value: str | None,
    override: str | None,
    expected: int,
) -> None:
    path = write_config(tmp_path, f"max_events = {file_value}\n" if file_value else "")
    environ = {"INDELIBLE_MAX_EVENTS": env_value} if env_value else {}
    settings = load_settings({"max_events": override}, environ=environ, config_file=path)
    assert settings.max_events == expected


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("max_body_bytes", "0"),
        ("max_events", "-1"),
        ("auth_fail_limit", "ten"),
        ("auth_fail_window", "0"),
        ("max_export_events", "0"),
        ("max_state_events", "1.5"),
        ("port", "70000"),
    ],
)
def test_a_bad_value_in_the_environment_names_the_setting(name: str, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={f"INDELIBLE_{name.upper()}": bad})
    assert caught.value.setting == name
    assert f"INDELIBLE_{name.upper()}" in str(caught.value)


def test_a_bad_override_names_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"auth_fail_window": "-5"}, environ={})
    assert caught.value.setting == "auth_fail_window"


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("max_body_bytes = 0", "max_body_bytes"),
        ("auth_fail_window = -1.0", "auth_fail_window"),
        ("max_events = 2.5", "max_events"),
        ('max_state_events = "lots"', "max_state_events"),
        ("log = 5", "log"),
        ("port = [8700]", "port"),
        ("host = { name = 'x' }", "host"),
    ],
)
def test_a_bad_value_in_the_file_names_the_setting_and_the_file(
    tmp_path: Path, line: str, name: str
) -> None:
    path = write_config(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert caught.value.setting == name
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["max_events", "auth_fail_limit", "port"])
def test_a_bool_where_an_int_is_expected_is_refused(tmp_path: Path, name: str) -> None:
    path = write_config(tmp_path, f"{name} = true\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert caught.value.setting == name


def test_a_bool_override_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"max_events": True}, environ={})
    assert caught.value.setting == "max_events"


def test_an_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = 9000\nmax_evnets = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert caught.value.setting == "max_evnets"
    assert str(path) in str(caught.value)


def test_an_unknown_table_in_the_file_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server]\nport = 9000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert caught.value.setting == "server"


def test_an_unknown_override_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"no_such_setting": "1"}, environ={})
    assert caught.value.setting == "no_such_setting"


def test_invalid_toml_names_config_and_the_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = = 9000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert caught.value.setting == "config"
    assert str(path) in str(caught.value)
    assert "line 1" in str(caught.value)


def test_a_file_that_is_not_utf8_names_config(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'log = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert caught.value.setting == "config"
    assert str(path) in str(caught.value)


def test_a_missing_file_names_config_and_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, config_file=path)
    assert caught.value.setting == "config"
    assert str(path) in str(caught.value)


def test_the_indelible_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "max_export_events = 42\n")
    settings = load_settings(environ={"INDELIBLE_CONFIG": str(path)})
    assert settings.max_export_events == 42


def test_the_config_argument_wins_over_indelible_config(tmp_path: Path) -> None:
    chosen = write_config(tmp_path, "max_events = 7\n")
    ignored = tmp_path / "absent.toml"
    settings = load_settings(environ={"INDELIBLE_CONFIG": str(ignored)}, config_file=chosen)
    assert settings.max_events == 7


def test_a_missing_file_named_by_indelible_config_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"INDELIBLE_CONFIG": str(path)})
    assert caught.value.setting == "config"
    assert str(path) in str(caught.value)


def test_the_example_file_in_the_operations_docs_loads(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
    example = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    path = write_config(tmp_path, example)
    settings = load_settings(environ={}, config_file=path)
    assert settings.auth_fail_window == 120.0
