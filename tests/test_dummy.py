from __future__ import annotations

from mailmodule import (
    ConfigMap,
    DeliveryTarget,
    Dummy,
    Header,
    MemoryBuffer,
    Module,
    MsgMetadata,
    MultiTable,
    PartialDelivery,
    PlainAuth,
    Table,
)


def test_dummy_implements_the_interfaces_maddys_does() -> None:
    dummy = Dummy()
    for interface in (Module, PlainAuth, DeliveryTarget, Table, MultiTable):
        assert isinstance(dummy, interface), interface


def test_dummy_identifies_as_given() -> None:
    assert (Dummy().name(), Dummy().instance_name()) == ("dummy", "dummy")
    assert Dummy("dummy", "other").instance_name() == "other"
    Dummy().init(ConfigMap({"anything": 1}))


def test_dummy_accepts_anyone() -> None:
    Dummy().auth_plain("anyone", "any password")


async def test_dummy_lookups_find_nothing() -> None:
    assert await Dummy().lookup("key") is None
    assert await Dummy().lookup_multi("key") == []


async def test_dummy_delivery_accepts_every_call() -> None:
    delivery = await Dummy().start(MsgMetadata(id="1"), "a@example.org")
    await delivery.add_rcpt("b@example.org")
    await delivery.add_rcpt("b@example.org")
    await delivery.body(Header(), MemoryBuffer(b"hi"))
    await delivery.commit()
    other = await Dummy().start(MsgMetadata(id="2"), "a@example.org")
    assert isinstance(other, PartialDelivery)
    await other.abort()
