"""`mailmodule creds list` against `mailmodule check-config`, on one configuration.

The configuration has a user table and its `auth.pass_table`, and 30 more `table.sql`
instances on their own databases: `creds list` initializes the two it needs,
`check-config` every one. Both run through `mailmodule.cli.main` in this process, once
imported: in a fresh interpreter the imports (the same for both) take most of the time,
and what this measures is the work a command does beyond them. The goal holds when
initializing only the instance needed saves a fifth of that work.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from _bench import compare

from mailmodule.cli import main

GOAL = 1.25  # creds list at least 1.25x as fast as check-config
TABLES = 30

CONFIG = """
[modules.users]
module = "table.file"
file = "{root}/users"

[modules.authdb]
module = "auth.pass_table"
table = "&users"
"""
TABLE = """
[modules.t{i}]
module = "table.sql"
dsn = "{root}/t{i}.db"
init = ["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)"]
lookup = "SELECT v FROM t WHERE k = :key"
"""


def mailmodule(*args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        if main(list(args)) != 0:
            raise SystemExit(f"mailmodule {' '.join(args)} failed")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "users").write_text("joe@example.org: argon2:placeholder\n")
        text = CONFIG + "".join(TABLE.format(i=i, root=root) for i in range(TABLES))
        config = root / "mail.toml"
        config.write_text(text.format(root=root))
        compare(
            f"mailmodule creds list (2 of {TABLES + 2} instances)",
            lambda: mailmodule("creds", "list", "-c", str(config)),
            lambda: mailmodule("check-config", "-c", str(config)),
            baseline_name="mailmodule check-config",
            number=5,
            rounds=15,
            goal=f">= {GOAL:.2f}x",
            target=GOAL,
        )
