"""The pytest plugin of mailmodule, loaded through the `pytest11` entry point.

Fixtures:
    mailmodule_registry: a fresh `Registry` with the reference modules, isolated from the
        default registry and from installed plugins.
    make_msg_metadata: builds `MsgMetadata` with a new message id; keywords set fields.
    dummy: a `Dummy` module.
    make_pipeline: builds a `Pipeline` from checks, modifiers and targets (all recipients
        go to the targets).
    smtp_endpoint: runs an SMTP or LMTP endpoint on loopback for the duration of an
        `async with`: `async with smtp_endpoint(pipeline) as (host, port): ...`.
    dns_server: a started authoritative DNS server on loopback (`DNSServer` of
        `mailmodule.testing.dnsserver`), empty until the test adds zones.

Configuration a plugin author would otherwise write: pytest-asyncio's
`asyncio_default_fixture_loop_scope` defaults to "function" (pytest-asyncio warns when it is
unset); a project's own setting wins. The suites' tests carry the `asyncio` marker, which
pytest-asyncio registers, so they run in its default strict mode as in auto mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Protocol

import pytest

from mailmodule.dummy import Dummy
from mailmodule.interfaces import Check, DeliveryTarget, Modifier
from mailmodule.metadata import ConnState, MailOptions, MsgMetadata, generate_msg_id
from mailmodule.pipeline import CheckSpec, Destination, Pipeline
from mailmodule.registry import Registry
from mailmodule.testing.dnsserver import DNSServer

__all__ = [
    "EndpointRunner",
    "MsgMetadataFactory",
    "PipelineBuilder",
    "dns_server",
    "dummy",
    "mailmodule_registry",
    "make_msg_metadata",
    "make_pipeline",
    "pytest_load_initial_conftests",
    "smtp_endpoint",
]

_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Give pytest-asyncio's fixture loop scope a default of "function".

    Runs after every installed plugin declared its settings and before any is read.
    Declaring the setting again changes only its default: a value from the project's
    configuration or `-o` still wins.
    """
    if early_config.pluginmanager.hasplugin("asyncio"):
        parser.addini(
            _LOOP_SCOPE,
            "default scope of the asyncio event loop used to execute async fixtures "
            "(mailmodule's pytest plugin: function unless set)",
            type="string",
            default="function",
        )


@pytest.fixture
def mailmodule_registry() -> Registry:
    """A registry of its own for one test, with the reference modules registered."""
    from mailmodule.modules import register_reference_modules

    registry = Registry(discover_plugins=False)
    registry.register("dummy", Dummy)
    register_reference_modules(registry)
    return registry


class MsgMetadataFactory(Protocol):
    def __call__(
        self,
        *,
        id: str | None = None,
        original_from: str = "",
        original_rcpts: dict[str, str] | None = None,
        smtp_opts: MailOptions | None = None,
        conn: ConnState | None = None,
        quarantine: bool = False,
    ) -> MsgMetadata: ...


class PipelineBuilder(Protocol):
    def __call__(
        self,
        *,
        targets: Iterable[DeliveryTarget],
        checks: Iterable[Check | CheckSpec] = (),
        modifiers: Iterable[Modifier] = (),
        hostname: str = "mx.test",
    ) -> Pipeline: ...


@pytest.fixture
def make_msg_metadata() -> MsgMetadataFactory:
    """`make_msg_metadata(original_from="a@example.org", ...)`: a MsgMetadata with a new id
    (unless one is given)."""

    def make(
        *,
        id: str | None = None,
        original_from: str = "",
        original_rcpts: dict[str, str] | None = None,
        smtp_opts: MailOptions | None = None,
        conn: ConnState | None = None,
        quarantine: bool = False,
    ) -> MsgMetadata:
        return MsgMetadata(
            id=id or generate_msg_id(),
            original_from=original_from,
            original_rcpts=original_rcpts,
            smtp_opts=smtp_opts or MailOptions(),
            conn=conn,
            quarantine=quarantine,
        )

    return make


@pytest.fixture
def dummy() -> Dummy:
    """A `Dummy`: accepts every delivery and login, finds nothing."""
    return Dummy()


@pytest.fixture
def make_pipeline() -> PipelineBuilder:
    """`make_pipeline(targets=[...], checks=[...], modifiers=[...], **pipeline_args)`."""

    def make(
        *,
        targets: Iterable[DeliveryTarget],
        checks: Iterable[Check | CheckSpec] = (),
        modifiers: Iterable[Modifier] = (),
        hostname: str = "mx.test",
    ) -> Pipeline:
        return Pipeline(
            checks=checks,
            modifiers=modifiers,
            default=Destination(targets=list(targets)),
            hostname=hostname,
        )

    return make


class EndpointRunner(Protocol):
    def __call__(
        self, pipeline: Pipeline, *, kind: str = "smtp", **settings: object
    ) -> contextlib.AbstractAsyncContextManager[tuple[str, int]]: ...


@pytest.fixture
def smtp_endpoint() -> EndpointRunner:
    """`async with smtp_endpoint(pipeline, kind="lmtp", max_message_size="1M") as (host,
    port):` an endpoint listening on a free loopback port, stopped on exit."""

    @contextlib.asynccontextmanager
    async def run(
        pipeline: Pipeline, *, kind: str = "smtp", **settings: object
    ) -> AsyncIterator[tuple[str, int]]:
        from mailmodule.config import ConfigMap
        from mailmodule.endpoint import SMTPEndpoint

        endpoint = SMTPEndpoint(kind, ["127.0.0.1:0"])
        endpoint.init(ConfigMap({"hostname": "mx.test", **settings}, module=kind))
        endpoint.pipeline = pipeline
        ((host, port),) = await endpoint.start()
        try:
            yield host, port
        finally:
            await endpoint.stop()

    return run


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    """A started authoritative DNS server on 127.0.0.1 with no zones, stopped after the
    test: `server.add_zone(text, origin="example.org")`, then
    `Resolver(nameservers=["127.0.0.1"], port=server.port)`."""
    with DNSServer() as server:
        yield server
