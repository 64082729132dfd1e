"""docs/scaling.md: its host configuration initializes against a real PostgreSQL and moto's
S3 server, and its migration of a table from SQLite runs as written."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import psycopg
import pytest

from mailmodule.modules.pass_table import hash_password
from mailmodule.modules.queue import PostgresQueueStore, QueueTarget
from mailmodule.server import Server
from tests.endpoint_kit import self_signed
from tests.interop.conftest import require_peer
from tests.interop.postgres_kit import Postgres, postgres
from tests.test_blob_s3 import configure, new_bucket, s3_endpoint

__all__ = ["postgres", "s3_endpoint"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scaling.md"
_names = itertools.count()
DOC_DSN = "postgresql://mailmodule:secret@db.internal:5432/mail"


def blocks(kind: str) -> list[str]:
    """The doc's fenced blocks of `kind` ("" for bare fences), dedented."""
    found = re.findall(r"^( *)```(\w*)\n(.*?)^\1```$", DOC.read_text(), re.M | re.S)
    return [textwrap.dedent(body) for _indent, lang, body in found if lang == kind]


def host_config(tmp_path: Path, dsn: str, s3: str) -> str:
    """The doc's TOML, pointed at the services of the test."""
    [block] = blocks("toml")
    cert, key = self_signed(tmp_path, "mx1.example.org")
    block = block.replace(DOC_DSN, dsn).replace('"s3.internal:9000"', f'"{s3}"')
    return block.replace("/etc/mailmodule/mx.pem", cert).replace("/etc/mailmodule/mx.key", key)


@pytest.fixture
def services(postgres: Postgres, s3_endpoint: str) -> tuple[str, str]:
    """A fresh database, and the S3 service with the doc's bucket."""
    dsn = postgres.create_database(f"scaling{next(_names)}")
    store = configure(s3_endpoint, "mail-queue")

    async def make() -> None:
        await new_bucket(store)
        await store.aclose()

    asyncio.run(make())
    return dsn, s3_endpoint.removeprefix("http://")


def test_the_host_configuration_of_docs_scaling_md_initializes(
    tmp_path: Path, services: tuple[str, str]
) -> None:
    dsn, s3 = services
    server = Server(tomllib.loads(host_config(tmp_path, dsn, s3)), source="docs/scaling.md")
    try:
        server.initialize()
        assert isinstance(server.instance("outbound"), QueueTarget)
        assert isinstance(server.instance("local_store"), PostgresQueueStore)
    finally:
        server.registry.close_all()
    with psycopg.connect(dsn) as conn:
        tables = {r[0] for r in conn.execute(b"SELECT tablename FROM pg_tables").fetchall()}
    assert {"users", "aliases", "queue_local", "queue_outbound", "queue_local_staged"} <= tables


OLD = """
[modules.users]
module = "table.sql"
dsn = "users.db"
lookup = "SELECT hash FROM users WHERE name = :key"

[modules.aliases]
module = "table.sql"
dsn = "aliases.db"
lookup = "SELECT target FROM aliases WHERE address = :key"
list = "SELECT address FROM aliases ORDER BY address"
set = "INSERT OR REPLACE INTO aliases VALUES (:key, :value)"
del = "DELETE FROM aliases WHERE address = :key"
"""


def sqlite_table(path: Path, create: str, rows: dict[str, str]) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(create)
        conn.executemany(f"INSERT INTO {path.stem} VALUES (?, ?)", rows.items())
    conn.close()


def test_the_migration_of_docs_scaling_md_copies_tables_and_creds_to_postgres(
    tmp_path: Path, services: tuple[str, str]
) -> None:
    require_peer("sqlite3")
    require_peer("psql")
    dsn, s3 = services
    hashes = {"joe": hash_password("pw-joe", n=1024), "ann": hash_password("pw-ann", n=1024)}
    aliases = {"postmaster@example.org": "joe@example.org", "team@example.org": "ann@example.org"}
    sqlite_table(tmp_path / "users.db", "CREATE TABLE users (name TEXT, hash TEXT)", hashes)
    sqlite_table(tmp_path / "aliases.db", "CREATE TABLE aliases (address TEXT, target TEXT)",
                 aliases)  # fmt: skip
    (tmp_path / "old.toml").write_text(OLD)
    (tmp_path / "new.toml").write_text(host_config(tmp_path, dsn, s3))
    bin_dir = Path(sys.executable).parent
    check = subprocess.run(
        [str(bin_dir / "mailmodule"), "check-config", "-c", "new.toml"], cwd=tmp_path, check=False,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr  # creates the tables the copies go to
    for script in [b for b in blocks("") if "mailmodule table" in b or "psql" in b]:
        subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(DOC_DSN, dsn)], cwd=tmp_path,
            check=True, timeout=120, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        )  # fmt: skip
    with psycopg.connect(dsn) as pg:
        assert dict(pg.execute(b"SELECT name, hash FROM users").fetchall()) == hashes
        assert dict(pg.execute(b"SELECT address, target FROM aliases").fetchall()) == aliases
    listed = subprocess.run(
        [str(bin_dir / "mailmodule"), "creds", "-c", "new.toml", "list"],
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sorted(listed.stdout.split()) == ["ann", "joe"]


def test_docs_scaling_md_draws_three_hosts_one_postgresql_and_one_s3() -> None:
    [drawing] = [b for b in blocks("") if "serve" in b and "PostgreSQL" in b]
    assert len(re.findall(r"\| mx\d", drawing)) == 3
    assert drawing.count("PostgreSQL") == 1
    assert drawing.count("S3") == 1
