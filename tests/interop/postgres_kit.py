"""A real PostgreSQL server for the tests: initdb in a temporary directory, listening on a
free loopback port, stopped after the session.

Debian's binaries (`postgresql` package, /usr/lib/postgresql/N/bin) are used; PostgreSQL
refuses to run as root, so under root the server runs as the `postgres` user (or `nobody`).
Tests that need it skip, saying why, when no binaries are found.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.endpoint_kit import free_port

_INSTALL = "install it with `bash .ci/install-peers` (apt-get install postgresql)"


def _bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root with neither a postgres nor a nobody user to run PostgreSQL")


@attrs.frozen
class Postgres:
    """A running server: connect with `dsn(database)`."""

    port: int
    user: str

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.dsn(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session, trusting loopback connections."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL's initdb not found in $PATH or /usr/lib/postgresql: {_INSTALL}")
    owner = _run_as()
    root = Path(tempfile.mkdtemp(prefix="mailmodule-pg-"))
    data = root / "data"
    data.mkdir()
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
        os.chown(data, owner.pw_uid, owner.pw_gid)
    uid = owner.pw_uid if owner is not None else None
    gid = owner.pw_gid if owner is not None else None
    groups: list[int] | None = [] if owner is not None else None
    port = free_port()
    log = root / "server.log"
    try:
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "mailmodule", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, cwd=root, user=uid, group=gid, extra_groups=groups,
        )  # fmt: skip
        with open(log, "wb") as errors:
            server = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                 "-k", str(root), "-c", "fsync=off", "-c", "max_connections=60"],
                stdout=subprocess.DEVNULL, stderr=errors, cwd=root,
                user=uid, group=gid, extra_groups=groups,
            )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {exc.stderr.decode(errors='replace')}")
    try:
        _wait_ready(port, server, log)
        yield Postgres(port=port, user="mailmodule")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            pytest.fail(f"postgres exited {server.returncode}: {log.read_text(errors='replace')}")
        try:
            with psycopg.connect(
                f"host=127.0.0.1 port={port} user=mailmodule dbname=postgres", connect_timeout=2
            ):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
