"""One source for settings: the declarations check configurations, feed `modules --describe`
and docs/configuration.md, whose TOML examples `check-config` accepts."""

from __future__ import annotations

import io
import re
import runpy
import shutil
from pathlib import Path

import pytest

from mailmodule import ConfigError, ConfigMap
from mailmodule.cli import _describe, _parser, main
from mailmodule.config import Setting, declared_settings
from mailmodule.endpoint import ENDPOINT_KINDS, SMTPEndpoint
from mailmodule.modules import REFERENCE_MODULES
from tests.endpoint_kit import self_signed

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
DECLARED = sorted(
    (
        (name, setting)
        for name, factory in REFERENCE_MODULES.items()
        for setting in declared_settings(factory) or ()
    ),
    key=lambda pair: (pair[0], pair[1].name),
)
# A value no setting of these kinds takes.
WRONG = {"string": 7, "integer": "many", "boolean": "maybe", "duration": "soon", "size": "big"}


def toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.DOTALL)


def init(name: str, settings: dict[str, object]) -> None:
    module = REFERENCE_MODULES[name](name, "m", [], [])
    module.init(ConfigMap(settings, module="m"))


def test_configuration_md_is_what_the_generator_writes() -> None:
    generator = runpy.run_path(str(ROOT / "scripts" / "gen_config_docs.py"), run_name="gen")
    render = generator["render"]
    assert callable(render)
    assert DOC.read_text() == render(), "run: python scripts/gen_config_docs.py"


@pytest.mark.parametrize("name", sorted(REFERENCE_MODULES))
def test_every_reference_module_declares_its_settings(name: str) -> None:
    assert declared_settings(REFERENCE_MODULES[name]) is not None


def test_the_endpoints_declare_their_settings() -> None:
    settings = declared_settings(SMTPEndpoint)
    assert settings is not None
    assert "max_message_size" in {s.name for s in settings}


@pytest.mark.parametrize("name", sorted(REFERENCE_MODULES))
def test_a_misspelt_key_is_refused_naming_it_and_the_declared_one(name: str) -> None:
    settings = declared_settings(REFERENCE_MODULES[name]) or ()
    wanted = settings[0].name + "x" if settings else "anything"
    with pytest.raises(ConfigError, match="unknown key") as info:
        init(name, {wanted: "value"})
    assert info.value.key == wanted
    if settings:
        assert f"did you mean {settings[0].name!r}" in str(info.value)


@pytest.mark.parametrize(
    ("name", "setting"),
    [(n, s) for n, s in DECLARED if s.kind in WRONG],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_a_declared_setting_of_the_wrong_type_is_refused_naming_its_key(
    name: str, setting: Setting[object]
) -> None:
    with pytest.raises(ConfigError) as info:
        init(name, {setting.name: WRONG[setting.kind]})
    assert (info.value.module, info.value.key) == ("m", setting.name)


@pytest.mark.parametrize("kind", ENDPOINT_KINDS)
def test_an_endpoint_setting_of_the_wrong_type_is_refused_naming_its_key(kind: str) -> None:
    endpoint = SMTPEndpoint(kind, ["127.0.0.1:0"])
    with pytest.raises(ConfigError) as info:
        endpoint.init(ConfigMap({"max_recipients": "many"}, module=kind))
    assert info.value.key == "max_recipients"


@pytest.mark.parametrize("name", ["smtp", *sorted(REFERENCE_MODULES)])
def test_describe_prints_the_summary_and_each_declared_setting(name: str) -> None:
    out = io.StringIO()
    assert _describe(name, out) == 0
    factory = SMTPEndpoint if name == "smtp" else REFERENCE_MODULES[name]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{name} (")
    described = [f"  {s.describe()}" for s in declared_settings(factory) or ()]
    assert lines[1:] == (described or ["  no settings"])


def test_describe_of_an_unknown_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modules", "--describe", "target.maildri"]) == 2
    assert "target.maildir" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_the_help_of_commands_reading_a_configuration_points_to_its_format(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "docs/configuration.md" in text
    assert "[[endpoints]]" in text


def test_the_document_has_a_complete_example_with_an_mx_submission_and_lmtp() -> None:
    example = toml_blocks()[0]
    for kind in ('type = "smtp"', 'type = "submission"', 'type = "lmtp"', 'auth = "&authdb"'):
        assert kind in example


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the certificate")
@pytest.mark.parametrize("index", range(len(toml_blocks())))
def test_check_config_accepts_every_example_of_the_document(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    cert, key = self_signed(tmp_path, "mx.example.org")
    (tmp_path / "certs").mkdir()
    shutil.move(cert, tmp_path / "certs" / "mx.example.org.pem")
    shutil.move(key, tmp_path / "certs" / "mx.example.org.key")
    (tmp_path / "mail.toml").write_text(toml_blocks()[index])
    assert main(["-q", "check-config", "-c", "mail.toml"]) == 0, capsys.readouterr().err
    assert "mail.toml: OK" in capsys.readouterr().out
