from __future__ import annotations

import attrs
import pytest
from authres import SPFAuthenticationResult

import mailmodule
from mailmodule import (
    AUTH_COMMON_DOMAIN,
    AUTH_DISABLED,
    AUTH_DNSSEC,
    AUTH_MTASTS,
    UNKNOWN_BLOB_SIZE,
    Check,
    CheckResult,
    Closer,
    Delivery,
    DeliveryTarget,
    EarlyCheck,
    Header,
    Module,
    MultiTable,
    MutableTable,
    MXLevel,
    PartialDelivery,
    PlainAuth,
    PlainUserDB,
    SMTPError,
    Table,
    TLSLevel,
)
from tests.typing import implementations as impl


class PlainDelivery:
    async def add_rcpt(self, rcpt_to: str) -> None:
        pass

    async def body(self, header: Header, body: mailmodule.Buffer) -> None:
        pass

    async def abort(self) -> None:
        pass

    async def commit(self) -> None:
        pass


class LookupOnly:
    async def lookup(self, key: str) -> str | None:
        return None


def test_partial_delivery_is_told_apart_at_run_time() -> None:
    assert isinstance(impl.MyDelivery(), PartialDelivery)
    assert isinstance(PlainDelivery(), Delivery)
    assert not isinstance(PlainDelivery(), PartialDelivery)


def test_early_check_is_told_apart_at_run_time() -> None:
    check = impl.MyCheck("check.x", "x", [], [])
    assert isinstance(check, Check)
    assert isinstance(check, EarlyCheck)
    assert not isinstance(impl.MyTarget("t", "t", [], []), EarlyCheck)


def test_optional_table_interfaces_are_told_apart_at_run_time() -> None:
    assert isinstance(LookupOnly(), Table)
    assert not isinstance(LookupOnly(), MultiTable)
    assert not isinstance(LookupOnly(), MutableTable)
    table = impl.MyTable("table.x", "x", [], [])
    assert isinstance(table, MultiTable)
    assert isinstance(table, MutableTable)


def test_closer_and_module_are_checked_by_method_presence() -> None:
    module = impl.Base("m", "m", [], [])
    assert isinstance(module, Module)
    assert isinstance(module, Closer)
    assert not isinstance(LookupOnly(), Module)
    assert isinstance(module, DeliveryTarget) is False


def test_plain_user_db_extends_plain_auth() -> None:
    auth = impl.MyAuth("auth.x", "x", [], [])
    assert isinstance(auth, PlainAuth)
    assert isinstance(auth, PlainUserDB)


def test_check_result_says_nothing_by_default() -> None:
    result = CheckResult()
    assert (result.reason, result.reject, result.quarantine) == (None, False, False)
    assert result.auth_result == ()
    assert len(result.header) == 0


def test_check_result_keeps_auth_results_as_a_tuple() -> None:
    spf = SPFAuthenticationResult(result="pass", smtp_mailfrom="example.net")
    result = CheckResult(auth_result=[spf], reject=True, reason=SMTPError(550, (5, 7, 1), "no"))
    assert result.auth_result == (mailmodule.AuthResult.of(spf),)
    assert result.auth_result[0].get("smtp", "mailfrom") == "example.net"
    spf.result = "fail"  # the check's own object may change; the result does not
    assert result.auth_result[0].result == "pass"
    assert hash(result) == hash(attrs.evolve(result))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.reject = False  # type: ignore[misc]  # proving it is frozen


def test_levels_keep_the_seeds_order() -> None:
    assert TLSLevel.TLS_NONE < TLSLevel.TLS_ENCRYPTED < TLSLevel.TLS_AUTHENTICATED
    assert MXLevel.MX_NONE < MXLevel.MX_MTASTS < MXLevel.MX_DNSSEC
    assert [int(v) for v in MXLevel] == [3, 4, 5]  # iota continues in the seed's const block
    assert str(TLSLevel.TLS_AUTHENTICATED) == "authenticated"
    assert str(MXLevel.MX_MTASTS) == "mtasts"


def test_constants_have_the_seeds_values() -> None:
    assert (AUTH_DISABLED, AUTH_MTASTS, AUTH_DNSSEC, AUTH_COMMON_DOMAIN) == (
        "off",
        "mtasts",
        "dnssec",
        "common_domain",
    )
    assert UNKNOWN_BLOB_SIZE == -1


async def test_implementations_run_through_their_stages() -> None:
    check = impl.MyCheck("check.x", "x", [], [])
    state = await check.check_state_for_msg(mailmodule.MsgMetadata())
    assert (await state.check_connection()) == CheckResult()
    result = await state.check_body(Header(), mailmodule.MemoryBuffer(b""))
    assert [(f.name, f.value) for f in result.header] == [("X-Checked", "yes")]
    assert hash(result) == hash(attrs.evolve(result))  # a value, all the way down
    state.close()
