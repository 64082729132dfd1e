"""The pytest plugin's fixtures and the strategies the kit ships."""

from __future__ import annotations

import os

from hypothesis import given

from mailmodule import ConnState, Dummy, Header, MemoryBuffer, MsgMetadata, Registry, address
from mailmodule.header import read_header
from mailmodule.testing import strategies as mst
from mailmodule.testing.plugin import EndpointRunner, MsgMetadataFactory, PipelineBuilder


def test_the_registry_fixture_is_isolated_and_has_the_reference_modules(
    mailmodule_registry: Registry,
) -> None:
    assert "target.maildir" in mailmodule_registry.modules()
    assert mailmodule_registry.instances() == ()
    mailmodule_registry.register("check.only_here", Dummy)
    import mailmodule

    assert not mailmodule.has_instance("check.only_here")


def test_the_metadata_factory_gives_fresh_ids(make_msg_metadata: MsgMetadataFactory) -> None:
    one, two = make_msg_metadata(), make_msg_metadata(original_from="a@example.org")
    assert one.id != two.id
    assert two.original_from == "a@example.org"


async def test_the_pipeline_builder_and_dummy_deliver(
    make_pipeline: PipelineBuilder, dummy: Dummy
) -> None:
    pipeline = make_pipeline(targets=[dummy])
    delivery = await pipeline.start(MsgMetadata(id="m"), "a@example.org")
    await delivery.add_rcpt("b@example.org")
    await delivery.body(Header(), MemoryBuffer(b"x"))
    await delivery.commit()


@given(mst.addresses)
def test_generated_addresses_split(addr: str) -> None:
    local, domain = address.split(addr)
    assert local
    assert domain or addr.lower() == "postmaster"


@given(mst.raw_headers(), mst.bodies)
def test_generated_messages_parse(block: bytes, body: bytes) -> None:
    header, offset = read_header(block + body)
    assert header.to_bytes() == block
    assert (block + body)[offset:] == body


@given(mst.msg_metadata, mst.conn_states)
def test_generated_metadata_survives_json(meta: MsgMetadata, conn: ConnState) -> None:
    meta.conn = conn
    assert MsgMetadata.from_json(meta.to_json(with_conn=True)) == meta


async def test_the_endpoint_fixture_serves_on_loopback(
    smtp_endpoint: EndpointRunner, make_pipeline: PipelineBuilder, dummy: Dummy
) -> None:
    import asyncio
    import smtplib

    async with smtp_endpoint(make_pipeline(targets=[dummy])) as (host, port):

        def send() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP(host, port) as client:
                return client.sendmail(
                    "a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n"
                )

        assert await asyncio.to_thread(send) == {}


def test_the_pytest_plugin_loads_without_hypothesis() -> None:
    """mailmodule's runtime dependencies exclude hypothesis; pytest loads our plugin in
    every project that installs mailmodule, so the plugin must not need it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import mailmodule.testing.plugin\n"
        "print('loaded')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "loaded", result.stderr


def test_a_plugin_authors_run_needs_no_configuration_and_gives_no_warning() -> None:
    """examples/plugin configures nothing for pytest-asyncio: the kit's plugin sets the
    fixture loop scope, and the suites' tests run in pytest-asyncio's default strict mode."""
    import subprocess
    import sys
    from pathlib import Path

    plugin = Path(__file__).resolve().parent.parent / "examples" / "plugin"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--strict-markers", "tests"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=plugin,
        env={**os.environ, "PYTHONPATH": str(plugin / "src")},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "mode=Mode.STRICT" in output
    assert "asyncio_default_fixture_loop_scope=function" in output
    assert "warning" not in output.lower(), output


def test_a_projects_own_fixture_loop_scope_wins_over_the_plugins_default() -> None:
    import subprocess
    import sys
    from pathlib import Path

    plugin = Path(__file__).resolve().parent.parent / "examples" / "plugin"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_default_fixture_loop_scope=module",
            "tests",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=plugin,
        env={**os.environ, "PYTHONPATH": str(plugin / "src")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "asyncio_default_fixture_loop_scope=module" in result.stdout
