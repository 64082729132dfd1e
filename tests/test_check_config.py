"""`mailmodule check-config` refuses settings that would only fail once serving."""

from __future__ import annotations

import string
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailmodule import ConfigError, ConfigMap
from mailmodule.config import redact_dsn
from mailmodule.server import Server


def _refused(data: Mapping[str, object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Server(data, source="t.toml").initialize()
    assert info.value.file == "t.toml"
    return info.value


def _endpoint(**settings: object) -> dict[str, object]:
    return {"endpoints": [{"listen": ["127.0.0.1:2525"], **settings}]}


def _module(module: str, **settings: object) -> dict[str, object]:
    return {"modules": {"m": {"module": module, **settings}}}


@pytest.mark.parametrize("value", [-1, 0, "-3"])
def test_a_max_recipients_below_one_is_refused(value: object) -> None:
    error = _refused(_endpoint(max_recipients=value))
    assert (error.section, error.key) == ("endpoints[0]", "max_recipients")
    assert "at least 1" in str(error)


@pytest.mark.parametrize(
    "key", ["max_message_size", "max_header_size", "max_header_fields", "max_errors"]
)
def test_every_endpoint_limit_that_must_be_positive_refuses_zero(key: str) -> None:
    error = _refused(_endpoint(**{key: 0}))
    assert (error.section, error.key) == ("endpoints[0]", key)


@pytest.mark.parametrize("key", ["max_sessions", "max_sessions_per_ip", "buffer_max_memory"])
def test_endpoint_limits_where_zero_means_none_refuse_negatives(key: str) -> None:
    error = _refused(_endpoint(**{key: -1}))
    assert (error.section, error.key) == ("endpoints[0]", key)


@pytest.mark.parametrize("key", ["timeout", "command_timeout", "data_timeout", "session_timeout"])
@pytest.mark.parametrize("value", ["-5s", "0s", -1])
def test_a_negative_or_zero_endpoint_timeout_is_refused(key: str, value: object) -> None:
    error = _refused(_endpoint(**{key: value}))
    assert (error.section, error.key) == ("endpoints[0]", key)
    assert "positive duration" in str(error)


def test_a_negative_auth_failure_delay_is_refused_and_zero_is_not() -> None:
    error = _refused(_endpoint(auth_failure_delay="-1s"))
    assert (error.section, error.key) == ("endpoints[0]", "auth_failure_delay")
    Server(_endpoint(auth_failure_delay="0s"), source="t.toml").initialize()


@pytest.mark.parametrize("module", ["check.command", "check.iprev"])
@pytest.mark.parametrize("value", ["-1s", "0s"])
def test_a_check_timeout_that_is_not_positive_is_refused(module: str, value: str) -> None:
    error = _refused(_module(module, command=[sys.executable], timeout=value))
    assert (error.section, error.key) == ("modules.m", "timeout")


def test_a_check_command_header_limit_of_zero_is_refused() -> None:
    error = _refused(_module("check.command", command=[sys.executable], max_header_size=0))
    assert (error.section, error.key) == ("modules.m", "max_header_size")


def test_a_negative_table_reload_interval_is_refused(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("")
    error = _refused(_module("table.file", file=str(users), reload_interval="-1s"))
    assert (error.section, error.key) == ("modules.m", "reload_interval")


def test_check_config_exits_78_and_names_file_section_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[endpoints]]\nlisten = ["127.0.0.1:2525"]\nmax_recipients = -1\n')
    done = subprocess.run(
        [sys.executable, "-m", "mailmodule", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78
    assert f"file {str(config)!r}" in done.stderr
    assert "section 'endpoints[0]', key 'max_recipients'" in done.stderr
    assert "at least 1, got -1" in done.stderr


def test_a_tls_listener_without_a_tls_loader_is_refused() -> None:
    error = _refused({"endpoints": [{"listen": ["tls://127.0.0.1:465"]}]})
    assert (error.section, error.key) == ("endpoints[0]", "listen")
    assert "needs a tls loader" in str(error)


def test_a_submissions_endpoint_without_a_tls_loader_is_refused() -> None:
    error = _refused({"endpoints": [{"type": "submissions", "listen": ["127.0.0.1:465"]}]})
    assert (error.section, error.key) == ("endpoints[0]", "tls")


def test_a_tls_listener_with_a_tls_loader_is_accepted(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("")
    key.write_text("")
    data = {
        "modules": {"tls": {"module": "tls.loader.file", "certs": [[str(cert), str(key)]]}},
        "endpoints": [{"listen": ["tls://127.0.0.1:465"], "tls": "&tls"}],
    }
    server = Server(data, source="t.toml")
    server.initialize()
    assert len(server.endpoints) == 1


@pytest.mark.parametrize(
    "address",
    [
        "udp://127.0.0.1:25",
        "http://127.0.0.1:25",
        "127.0.0.1",
        "tls://mx.example.org",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "no such host:25",
        "-mx.example.org:25",
        "mx..example.org:25",
        "[mx.example.org]:25",
        "[127.0.0.1]:25",
        "unix://relative.sock",
    ],
)
def test_a_malformed_listening_address_is_refused(address: str) -> None:
    error = _refused({"endpoints": [{"listen": ["127.0.0.1:2525", address]}]})
    assert (error.section, error.key) == ("endpoints[0]", "listen")
    assert repr(address) in str(error)


@pytest.mark.parametrize(
    "address", ["mx.example.org:25", "localhost.:25", "[::1]:25", "tcp://0.0.0.0:0", "::1:25"]
)
def test_well_formed_listening_addresses_are_accepted_without_resolving(address: str) -> None:
    Server({"endpoints": [{"listen": [address]}]}, source="t.toml").initialize()


def test_a_users_file_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    error = _refused(_module("table.file", file=str(tmp_path / "gone" / "users")))
    assert (error.section, error.key) == ("modules.m", "file")
    assert "does not exist" in str(error)


def test_a_missing_users_file_in_an_existing_directory_is_an_empty_table(tmp_path: Path) -> None:
    data = _module("table.file", file=str(tmp_path / "users"))
    Server(data, source="t.toml").initialize()


@pytest.mark.parametrize(
    "command", ["no-such-program-mailmodule", ["/nonexistent/bin/filter", "{sender}"]]
)
def test_a_check_command_whose_program_does_not_exist_is_refused(command: object) -> None:
    error = _refused(_module("check.command", command=command))
    assert (error.section, error.key) == ("modules.m", "command")
    assert "not an executable program" in str(error)


def test_a_check_command_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "filter"
    script.write_text("#!/bin/sh\n")
    for path in (script, tmp_path):
        error = _refused(_module("check.command", command=[str(path)]))
        assert (error.section, error.key) == ("modules.m", "command")


def test_a_check_command_found_on_the_path_is_accepted() -> None:
    Server(_module("check.command", command="sh -c true"), source="t.toml").initialize()


_SECRETS = st.text(string.ascii_letters + string.digits, min_size=10, max_size=30).map(
    lambda s: f"Pw{s}"
)


def _wrong_shapes(secret: str) -> list[dict[str, object]]:
    """Configurations that put `secret` into a secret setting with a wrong type or shape."""
    sql = {"module": "table.sql", "lookup": "SELECT 1"}
    command = {"module": "check.command", "command": [sys.executable]}
    return [
        {"modules": {"m": {**sql, "dsn": [f"postgresql://joe:{secret}@db/mail"]}}},
        {"modules": {"m": {**sql, "dsn": {"password": secret}}}},
        {"modules": {"m": {**sql, "dsn": f"postgresql://joe:{secret}@db/mail"}}},
        {"modules": {"m": {**sql, "dsn": f"/nonexistent/host=db password={secret}"}}},
        {"modules": {"m": {"module": "table.static", "entries": {"joe": {"hash": secret}}}}},
        {"modules": {"m": {"module": "table.static", "entries": {"joe": [secret, 1]}}}},
        {"modules": {"m": {**command, "env": {"TOKEN": [secret]}}}},
        {"modules": {"m": {**command, "env": {"TOKEN": {"v": secret}}}}},
    ]


@given(_SECRETS)
def test_configuration_errors_never_echo_a_secret_setting(secret: str) -> None:
    for data in _wrong_shapes(secret):
        error = _refused(data)
        assert error.section == "modules.m"
        assert error.key in ("dsn", "entries", "env")
        assert secret not in str(error)


@given(_SECRETS)
def test_a_malformed_users_file_is_refused_without_echoing_its_hashes(secret: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        users = Path(folder) / "users"
        users.write_text(f"joe@example.org: $2b$10${secret}\n: $2b$10${secret}\n")
        data = {
            "modules": {
                "users": {"module": "table.file", "file": str(users)},
                "auth": {"module": "auth.pass_table", "table": "&users"},
            }
        }
        error = _refused(data)
    assert (error.section, error.key) == ("modules.users", "file")
    assert ":2:" in str(error)
    assert secret not in str(error)


@given(_SECRETS, st.sampled_from(["dsn", "password", "api_token", "client-secret", "env"]))
def test_every_accessor_hides_the_values_of_secret_looking_keys(secret: str, key: str) -> None:
    cfg = ConfigMap({key: [secret]}, module="m")
    for read in (cfg.string, cfg.integer, cfg.boolean, cfg.duration, cfg.size, cfg.module_ref):
        with pytest.raises(ConfigError) as info:
            read(key)
        assert info.value.key == key
        assert secret not in str(info.value)
    text = ConfigMap({key: secret}, module="m")
    for parse in (text.integer, text.duration, text.size):
        with pytest.raises(ConfigError) as info:
            parse(key)
        assert secret not in str(info.value)


def test_keys_that_hold_no_secret_still_show_their_value() -> None:
    with pytest.raises(ConfigError, match="'nine'"):
        ConfigMap({"max_recipients": "nine"}, module="m").integer("max_recipients")


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://joe:hunter2@db/mail", "postgresql://joe:***@db/mail"),
        ("postgresql://joe:p@ss@db/mail", "postgresql://joe:***@db/mail"),
        (
            "host=db user=joe password=hunter2 dbname=mail",
            "host=db user=joe password=*** dbname=mail",
        ),
        ("host=db PASSWORD='hun ter2'", "host=db PASSWORD=***"),
        ("/var/lib/mailmodule/users.db", "/var/lib/mailmodule/users.db"),
    ],
)
def test_redact_dsn_masks_the_password_of_urls_and_keyword_strings(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
