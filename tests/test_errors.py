from __future__ import annotations

import pickle

import pytest

from mailmodule import errors
from mailmodule.errors import (
    ENHANCED_CODE_NOT_SET,
    NO_ENHANCED_CODE,
    AddressError,
    ConfigError,
    DataError,
    DuplicateModuleError,
    ErrNoSuchBlob,
    ErrUnknownCredentials,
    HeaderError,
    MailModuleError,
    MetadataError,
    ModuleInitError,
    NoSuchBlobError,
    RegistryError,
    SMTPError,
    UnknownCredentialsError,
    UnknownModuleError,
)

EXAMPLES: list[tuple[MailModuleError, str]] = [
    (SMTPError(550, (5, 1, 1), "User unknown"), "550 5.1.1 User unknown"),
    (
        SMTPError(451, (4, 7, 1), "Try later", check_name="check.rbl", misc={"list": "x"}),
        "451 4.7.1 Try later",
    ),
    (NoSuchBlobError(), "blob_store: no such object"),
    (NoSuchBlobError("a/b"), "blob_store: no such object: 'a/b'"),
    (UnknownCredentialsError(), "unknown credentials"),
    (UnknownCredentialsError("joe"), "unknown credentials: user 'joe'"),
    (ConfigError("expected an integer", module="table.file", key="size"), "module 'table.file'"),
    (ConfigError("bad", file="mail.toml", section="pipeline", key="k"), "file 'mail.toml'"),
    (UnknownModuleError("chek.x", suggestions=("check.x",)), "did you mean 'check.x'?"),
    (DuplicateModuleError("target.maildir"), "'target.maildir' is already registered"),
    (ModuleInitError("local_mailboxes", "no such file"), "'local_mailboxes' failed"),
    (MetadataError("expected an integer", path="MsgMeta.SMTPOpts.Size"), "MsgMeta.SMTPOpts.Size"),
    (AddressError("empty domain", address="joe@"), "invalid address 'joe@': empty domain"),
    (HeaderError("missing colon", line=3, text=b"Subject hi"), "header line 3: missing colon"),
]


@pytest.mark.parametrize(("err", "expected"), EXAMPLES, ids=lambda v: type(v).__name__)
def test_every_error_names_what_was_wrong(err: MailModuleError, expected: str) -> None:
    assert expected in str(err)


@pytest.mark.parametrize(("err", "expected"), EXAMPLES, ids=lambda v: type(v).__name__)
def test_every_error_survives_a_pickle_round_trip(err: MailModuleError, expected: str) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.args == err.args
    assert vars(back) == vars(err)


def test_every_error_is_a_mailmodule_error() -> None:
    classes = [getattr(errors, n) for n in errors.__all__ if not n.isupper()]
    for cls in classes:
        assert issubclass(cls, MailModuleError), cls


def test_hierarchy_is_at_most_two_levels_below_the_root() -> None:
    for name in errors.__all__:
        if name.isupper():
            continue
        cls = getattr(errors, name)
        own = [c for c in cls.__mro__ if issubclass(c, MailModuleError)]
        assert len(own) <= 3, name


def test_seed_sentinel_names_are_the_classes() -> None:
    assert ErrNoSuchBlob is NoSuchBlobError
    assert ErrUnknownCredentials is UnknownCredentialsError
    with pytest.raises(ErrNoSuchBlob):
        raise NoSuchBlobError


def test_smtp_error_reports_temporary_for_4xx_only() -> None:
    assert SMTPError(421, (4, 4, 2), "bye").is_temporary
    assert not SMTPError(554, (5, 7, 0), "no").is_temporary


def test_smtp_error_fields_name_check_target_and_cause() -> None:
    err = SMTPError(
        550, (5, 7, 1), "Rejected", check_name="check.x", target_name="t", misc={"n": 1}
    )
    err.__cause__ = OSError("disk on fire")
    assert err.fields() == {
        "n": 1,
        "smtp_code": 550,
        "smtp_enchcode": "5.7.1",
        "smtp_msg": "Rejected",
        "check": "check.x",
        "target": "t",
        "reason": "disk on fire",
    }


def test_smtp_error_misc_cannot_be_changed_behind_its_back() -> None:
    misc = {"a": 1}
    err = SMTPError(550, (5, 0, 0), "x", misc=misc)
    misc["a"] = 2
    assert err.misc["a"] == 1
    with pytest.raises(TypeError):
        err.misc["a"] = 3  # type: ignore[index]  # proving the mapping is read-only


def test_smtp_errors_compare_by_value() -> None:
    assert SMTPError(550, (5, 1, 1), "x") == SMTPError(550, (5, 1, 1), "x")
    assert SMTPError(550, (5, 1, 1), "x") != SMTPError(550, (5, 1, 2), "x")
    assert SMTPError(550, (5, 1, 1), "x", check_name="a") != SMTPError(550, (5, 1, 1), "x")


@pytest.mark.parametrize("code", [0, 199, 600, True])
def test_smtp_error_rejects_impossible_codes(code: int) -> None:
    with pytest.raises(ValueError, match="code must be"):
        SMTPError(code, (5, 0, 0), "x")


@pytest.mark.parametrize("enh", [(5, 0), (3, 0, 0), (5, -1, 0), (5, 1, "1")])
def test_smtp_error_rejects_malformed_enhanced_codes(enh: object) -> None:
    with pytest.raises(ValueError, match="enhanced_code"):
        SMTPError(550, enh, "x")  # type: ignore[arg-type]  # malformed on purpose


@pytest.mark.parametrize("message", [None, 5, b"bytes"])
def test_smtp_error_rejects_a_message_that_is_not_text(message: object) -> None:
    with pytest.raises(ValueError, match="message must be a str"):
        SMTPError(550, (5, 0, 0), message)  # type: ignore[arg-type]  # wrong on purpose


def test_lookup_errors_are_key_errors_too() -> None:
    assert isinstance(UnknownModuleError("x"), KeyError)
    assert isinstance(DuplicateModuleError("x"), KeyError)
    assert isinstance(DuplicateModuleError("x"), RegistryError)


def test_data_errors_are_value_errors_too() -> None:
    for cls in (MetadataError, HeaderError):
        assert issubclass(cls, DataError)
        assert issubclass(cls, ValueError)
    assert isinstance(AddressError("x", address="a"), ValueError)


def test_module_init_error_chains_its_cause() -> None:
    cause = FileNotFoundError("/etc/aliases")

    def init() -> None:
        try:
            raise cause
        except OSError as exc:
            raise ModuleInitError("aliases", str(exc)) from exc

    with pytest.raises(ModuleInitError, match="/etc/aliases") as info:
        init()
    assert info.value.__cause__ is cause
    assert info.value.instance_name == "aliases"


def test_smtp_error_knows_go_smtps_special_enhanced_codes() -> None:
    assert str(SMTPError(550, NO_ENHANCED_CODE, "no code")) == "550 no code"
    assert str(SMTPError(451, ENHANCED_CODE_NOT_SET, "derived")) == "451 4.0.0 derived"
