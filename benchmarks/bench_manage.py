"""`mailmodule creds list` against `mailmodule check-config`, on one configuration.

Each a fresh interpreter, as an operator runs them. The configuration has a user table
and its `auth.pass_table`, and 30 more `table.sql` instances on their own databases:
`creds list` initializes the two it needs, `check-config` every one. The goal holds when
a management command costs no more than checking the configuration does.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from _bench import compare

GOAL = 1.0  # creds list at least as fast as check-config
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
    subprocess.run(
        [sys.executable, "-m", "mailmodule", *args], check=True, stdout=subprocess.DEVNULL
    )


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
            number=2,
            rounds=9,
            goal=f">= {GOAL:.1f}x",
            target=GOAL,
        )
