"""Endpoints with pipelines of their own: `pipeline` inside an `[[endpoints]]` table."""

from __future__ import annotations

import asyncio
import random
import smtplib
import tomllib
from pathlib import Path

import pytest

from mailmodule import ConfigError
from mailmodule.modules.pass_table import hash_password
from mailmodule.server import Server
from tests.endpoint_kit import delivered
from tests.serve_kit import serving, write_config
from tests.test_server_cli import CONFIG, ROUTING, _mutate

# An inbound smtp endpoint on the top-level pipeline (local domains in, no relaying), and
# a submission endpoint whose own pipeline sends authenticated mail to `outbound`, a
# maildir standing in for the queue there is not yet.
TWO_PIPELINES = """
hostname = "mx.test"

[modules.users]
module = "table.static"
entries = {{ "joe@example.org" = "{hash}" }}

[modules.authdb]
module = "auth.pass_table"
table = "&users"

[modules.local]
module = "target.maildir"
root = "{root}/local"
autocreate = true

[modules.outbound]
module = "target.maildir"
root = "{root}/outbound"
autocreate = true

[pipeline]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}
default = {{ reject = "550 5.1.2 No relaying" }}

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:0"]
rdns = false

[[endpoints]]
type = "submission"
listen = ["127.0.0.1:0"]
rdns = false
auth = "&authdb"
auth_require_tls = false

[endpoints.pipeline]
default = {{ targets = ["&outbound"] }}

[endpoints.pipeline.sources."spammer.example"]
reject = "554 5.7.1 Not from there"
"""

MESSAGE = b"Subject: hi\r\n\r\nhi\r\n"


def two_pipelines(directory: Path) -> Path:
    return write_config(directory, TWO_PIPELINES, hash=hash_password("s3cret"))


def inbound(
    port: int, sender: str = "a@example.net", rcpt: str = "joe@example.org"
) -> dict[str, tuple[int, bytes]]:
    """One message to `rcpt` and a far recipient, unauthenticated; the refused ones."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        try:
            return s.sendmail(sender, [rcpt, "x@far.example"], MESSAGE)
        except smtplib.SMTPRecipientsRefused as exc:
            return exc.recipients


def submitted(port: int) -> dict[str, tuple[int, bytes]]:
    """The same message, after AUTH as joe; the refused recipients."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.login("joe@example.org", "s3cret")
        return s.sendmail("joe@example.org", ["ann@example.org", "x@far.example"], MESSAGE)


def submitted_by_spammer(port: int) -> tuple[int, bytes]:
    """The reply to MAIL FROM a sender the submission pipeline refuses."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.login("joe@example.org", "s3cret")
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            s.sendmail("x@spammer.example", ["ann@example.org"], MESSAGE)
        return info.value.smtp_code, info.value.smtp_error


def unauthenticated(port: int) -> int:
    """The reply code to MAIL FROM without AUTH."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo()
        code, _ = s.mail("joe@example.org")
        return code


async def test_each_endpoint_routes_by_its_own_pipeline(tmp_path: Path) -> None:
    server = Server.from_file(str(two_pipelines(tmp_path)))
    server.initialize()
    smtp, submission = server.endpoints
    assert smtp.pipeline is server.pipeline
    assert submission.pipeline is not server.pipeline
    bound = await server.start()
    try:
        ports = {name: port for name, _, port in bound}
        refused_in = await asyncio.to_thread(inbound, ports["smtp"])
        refused_out = await asyncio.to_thread(submitted, ports["submission"])
        spammer = await asyncio.to_thread(submitted_by_spammer, ports["submission"])
        smtp_spammer = await asyncio.to_thread(
            inbound, ports["smtp"], "x@spammer.example", "ann@example.org"
        )
        code = await asyncio.to_thread(unauthenticated, ports["submission"])
    finally:
        await server.stop()
    assert refused_in == {"x@far.example": (550, b"5.1.2 No relaying")}
    assert refused_out == {}
    assert spammer == (554, b"5.7.1 Not from there")
    # The top-level pipeline knows no spammer.example: ann gets it, relaying is refused.
    assert smtp_spammer == {"x@far.example": (550, b"5.1.2 No relaying")}
    assert code == 530
    local = [p.parent.parent.name for p in delivered(tmp_path / "mail" / "local")]
    outbound = [p.parent.parent.name for p in delivered(tmp_path / "mail" / "outbound")]
    assert sorted(local) == ["ann", "joe"]  # both by the smtp endpoint
    assert sorted(outbound) == ["ann", "x"]  # both submitted, none refused, none local


def test_an_endpoint_without_a_pipeline_shares_the_top_level_one(tmp_path: Path) -> None:
    text = TWO_PIPELINES + '\n[[endpoints]]\ntype = "lmtp"\nlisten = ["127.0.0.1:0"]\n'
    server = Server.from_file(str(write_config(tmp_path, text, hash="x")))
    server.initialize()
    smtp, submission, lmtp = server.endpoints
    assert smtp.pipeline is lmtp.pipeline is server.pipeline
    assert submission.pipeline.instance_name() == "endpoints[1].pipeline"


def test_workers_serve_each_endpoint_with_its_own_pipeline(tmp_path: Path) -> None:
    with serving(two_pipelines(tmp_path), "--workers", "2") as served:
        (smtp,) = served.ports("smtp")
        (submission,) = served.ports("submission")
        assert inbound(smtp) == {"x@far.example": (550, b"5.1.2 No relaying")}
        assert submitted(submission) == {}
        assert served.stop() == 0
    assert len(delivered(tmp_path / "mail" / "local")) == 1
    assert len(delivered(tmp_path / "mail" / "outbound")) == 2


def test_bind_then_start_on_the_sockets_keeps_each_endpoints_pipeline(tmp_path: Path) -> None:
    path = str(two_pipelines(tmp_path))
    parent = Server.from_file(path)
    parent.initialize()
    sockets = parent.bind()
    ports = {name: port for name, _, port in parent.bound}
    parent.registry.close_all()

    async def serve() -> None:
        worker = Server.from_file(path)
        worker.initialize()
        await worker.start(sockets)
        try:
            assert await asyncio.to_thread(inbound, ports["smtp"]) == {
                "x@far.example": (550, b"5.1.2 No relaying")
            }
            assert await asyncio.to_thread(submitted, ports["submission"]) == {}
        finally:
            await worker.stop()

    try:
        asyncio.run(serve())
    finally:
        for sock in (s for group in sockets for s in group):
            sock.close()
    assert len(delivered(tmp_path / "mail" / "outbound")) == 2


# Errors inside an endpoint's pipeline name it as `endpoints[N].pipeline...`

SOURCE = '\n[endpoints.pipeline.sources."example.org"]\n'
AT = "endpoints[1].pipeline"
BROKEN = [
    ("pipeline = 5", "endpoints[1]", "pipeline"),
    ("pipeline = { chekcs = [] }", AT, "chekcs"),
    ('pipeline = { checks = ["&local"] }', AT, "checks"),
    ('pipeline = { default = { targets = ["&nothing"] } }', f"{AT}.default", "targets"),
    (f"{SOURCE}modifers = []", f'{AT}.sources."example.org"', "modifers"),
    (f'{SOURCE}reject = "250 2.0.0 Fine"', f'{AT}.sources."example.org"', "reject"),
    (
        "[endpoints.pipeline]\ndefault = {}\n[endpoints.pipeline.default_source]",
        AT,
        "default_source",
    ),
    (
        '[endpoints.pipeline.destinations]\n"a@example.org" = { targets = ["&local"] }\n'
        '"A@Example.ORG" = { targets = ["&local"] }',
        f"{AT}.destinations",
        "A@Example.ORG",
    ),
]


@pytest.mark.parametrize(("pipeline", "section", "key"), BROKEN)
def test_a_broken_endpoint_pipeline_is_refused_naming_its_endpoint(
    tmp_path: Path, pipeline: str, section: str, key: str
) -> None:
    lmtp = '\n[[endpoints]]\ntype = "lmtp"\nlisten = ["127.0.0.1:0"]\n'
    path = tmp_path / "mail.toml"
    path.write_text(CONFIG.format(root=tmp_path / "mail") + lmtp + pipeline)
    with pytest.raises(ConfigError) as info:
        Server.from_file(str(path)).initialize()
    assert (info.value.file, info.value.section, info.value.key) == (str(path), section, key)
    assert section in str(info.value)


ENDPOINT_PIPELINE = """
[[endpoints]]
type = "lmtp"
listen = ["127.0.0.1:0"]

[endpoints.pipeline]
modifiers = ["&rewrite"]
destination_tables = [{{ table = "&aliases", targets = ["&local"] }}]
default = {{ reject = "550 5.1.2 No relaying" }}

[endpoints.pipeline.sources."example.net"]
checks = [{{ check = "&policy", fail_action = "reject 550 5.7.25 No rDNS" }}]
destinations = {{ "example.org" = {{ targets = ["&local"] }} }}

[[endpoints.pipeline.source_tables]]
table = "&trusted"
default = {{ targets = ["&local"] }}
"""


def test_any_broken_endpoint_pipeline_gives_only_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_server_cli's fuzz, on a configuration whose second endpoint has a pipeline: a
    third of the time the whole document is mutated, then that endpoint, then its pipeline."""
    monkeypatch.chdir(tmp_path)  # a mutated path lands here, nowhere else
    base = tomllib.loads((CONFIG + ROUTING + ENDPOINT_PIPELINE).format(root=tmp_path / "mail"))
    Server(base, source="fuzz.toml").initialize()  # the base itself builds
    endpoints = base["endpoints"]
    assert isinstance(endpoints, list)
    rng = random.Random(20261126)
    files: list[str | None] = []
    sections: list[str] = []
    keyless: list[ConfigError] = []
    accepted = 0
    for i in range(600):
        # Mutations of the whole document rarely reach the endpoint's pipeline.
        entry = endpoints[1]
        if i % 3 == 1:
            entry = _mutate(entry, rng)
        elif i % 3 == 2:
            entry = {**entry, "pipeline": _mutate(entry["pipeline"], rng)}
        data = _mutate(base, rng) if i % 3 == 0 else {**base, "endpoints": [endpoints[0], entry]}
        if not isinstance(data, dict):
            continue
        try:
            Server(data, source="fuzz.toml").initialize()
            accepted += 1
        except ConfigError as err:
            files.append(err.file)
            sections.append(err.section or "")
            if "pipeline" in (err.section or "") and err.key is None:
                keyless.append(err)
    assert set(files) == {"fuzz.toml"}  # every error names the file
    assert keyless == []  # in a pipeline, every error names the key
    assert sum(s.startswith("endpoints[1].pipeline") for s in sections) > 100
    assert accepted > 0
