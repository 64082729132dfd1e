"""Write docs/configuration.md (`python scripts/gen_config_docs.py`).

The format of `mailmodule serve`'s TOML file is written by hand in configuration.md.in,
after server.py and the endpoint, with the examples here; every module's settings come
from its declarations (`SETTINGS`, see mailmodule.config), the same ones that check a
configuration and that `mailmodule modules --describe NAME` prints.
tests/test_settings_docs.py fails when docs/configuration.md is not what this script
writes, and runs `check-config` on every TOML example in it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from mailmodule.config import Setting, declared_settings, factory_summary
from mailmodule.endpoint import ENDPOINT_KINDS, SMTPEndpoint
from mailmodule.modules import REFERENCE_MODULES

OUT = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

EXAMPLE = """\
# mail.toml: an inbound MX for example.org, submission with AUTH for its users, and LMTP
# for a local mail transfer agent to hand mail in. Relative paths are relative to the
# directory `mailmodule serve` runs in.
hostname = "mx.example.org"

# --- Module instances: [modules.<instance name>], module = "<module name>" ---

[modules.tls]                      # the certificate of STARTTLS and of port 465
module = "tls.loader.file"
certs = [["certs/mx.example.org.pem", "certs/mx.example.org.key"]]

[modules.users]                    # username -> password hash (auth.pass_table's forms)
module = "table.sql"
dsn = "users.db"
init = ["CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, hash TEXT NOT NULL)"]
lookup = "SELECT hash FROM users WHERE name = :key"
list = "SELECT name FROM users"
set = "INSERT OR REPLACE INTO users VALUES (:key, :value)"
del = "DELETE FROM users WHERE name = :key"

[modules.authdb]                   # AUTH PLAIN and LOGIN against that table
module = "auth.pass_table"
table = "&users"

[modules.addresses]                # which addresses each user may send as
module = "table.static"
entries = { "joe" = ["joe@example.org", "postmaster@example.org"], "ann" = "ann@example.org" }

[modules.aliases]
module = "table.static"
entries = { "postmaster@example.org" = "joe@example.org", "team@example.org" = [
  "joe@example.org",
  "ann@example.org",
] }

[modules.expand_aliases]
module = "modify.replace_rcpt"
table = "&aliases"

[modules.mailboxes]                # recipient local part -> mailbox: the users that exist
module = "table.static"
entries = { "joe" = "joe", "ann" = "ann" }

[modules.local]                    # one Maildir per mailbox under mail/
module = "target.maildir"
root = "mail"
mailboxes = "&mailboxes"

[modules.iprev]
module = "check.iprev"

[modules.sender_is_user]
module = "check.authorize_sender"
user_to_email = "&addresses"

# --- The pipeline of the MX (every endpoint without a pipeline of its own) ---

[pipeline]
checks = [{ check = "&iprev", fail_action = "quarantine" }]
modifiers = ["&expand_aliases"]
destinations = { "example.org" = { targets = ["&local"] } }
default = { reject = "550 5.7.1 This server takes mail for example.org only" }

# --- Endpoints ---

[[endpoints]]                      # the MX: port 25, STARTTLS offered
type = "smtp"
listen = ["tcp://0.0.0.0:25", "tcp://[::]:25"]
tls = "&tls"
max_message_size = "50M"

[[endpoints]]                      # submission: AUTH required, on 587 (STARTTLS) and 465
type = "submission"
listen = ["tcp://0.0.0.0:587", "tls://0.0.0.0:465"]
tls = "&tls"
auth = "&authdb"
rdns = false

[endpoints.pipeline]               # its own pipeline: users send as themselves
checks = ["&sender_is_user"]
modifiers = ["&expand_aliases"]
destinations = { "example.org" = { targets = ["&local"] } }
# Mail for other domains needs an outbound target (target.queue with target.remote).
default = { reject = "554 5.7.1 Only local delivery is configured" }

[[endpoints]]                      # LMTP on a Unix socket, for a local MTA such as Postfix
type = "lmtp"
listen = ["unix:///run/mailmodule/lmtp.sock"]
rdns = false

[endpoints.pipeline]
destinations = { "example.org" = { targets = ["&local"] } }
default = { reject = "550 5.1.1 No such mailbox here" }
"""

SOURCES_EXAMPLE = """\
hostname = "mx.example.org"

[modules.local]
module = "target.maildir"
root = "mail"
autocreate = true

[modules.trusted]                  # senders whose mail skips the checks of other sources
module = "table.static"
entries = { "partner@example.net" = "yes" }

[pipeline]
destinations = { "example.org" = { targets = ["&local"] } }
default = { reject = "550 5.1.2 No route to this recipient" }

[pipeline.sources."spammer.example"]
reject = "554 5.7.1 Go away"       # refused at MAIL FROM

[pipeline.sources.""]              # the null sender (bounces): only to postmaster
destinations = { "postmaster@example.org" = { targets = ["&local"] } }
default = { reject = "550 5.7.1 Bounces go to postmaster only" }

[[pipeline.source_tables]]         # senders the table knows
table = "&trusted"
destinations = { "example.org" = { targets = ["&local"] } }

[[endpoints]]
type = "smtp"
listen = ["127.0.0.1:2525"]
"""

TEMPLATE = Path(__file__).resolve().parent / "configuration.md.in"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_table(settings: Iterable[Setting[object]]) -> list[str]:
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    for s in settings:
        rows.append(
            f"| `{s.name}` | {cell(s.type_text())} | {cell(s.default_text())} | {cell(s.doc)} |"
        )
    return rows


def module_section(title: str, factory: object) -> list[str]:
    lines = ["", f"### {title}", "", factory_summary(factory)]
    settings = declared_settings(factory)
    if settings is None:
        lines += ["", "Settings not declared."]
    elif not settings:
        lines += ["", "No settings."]
    else:
        lines += ["", *settings_table(settings)]
    return lines


def render() -> str:
    text = TEMPLATE.read_text().replace("<!-- EXAMPLE -->", EXAMPLE)
    lines = text.replace("<!-- SOURCES_EXAMPLE -->", SOURCES_EXAMPLE).splitlines()
    lines += module_section(f"endpoints: {', '.join(ENDPOINT_KINDS)}", SMTPEndpoint)
    aliases: dict[object, list[str]] = {}
    for name, factory in REFERENCE_MODULES.items():
        aliases.setdefault(factory, []).append(name)
    for names in sorted(aliases.values()):
        lines += module_section(" and ".join(f"`{n}`" for n in names), REFERENCE_MODULES[names[0]])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.exit(0)
