"""The `mailmodule` command line.

    mailmodule modules                  registered modules by prefix, plugins included
    mailmodule modules --describe NAME  a module's (or endpoint's) settings
    mailmodule serve -c mail.toml       run the server until SIGTERM or SIGINT; SIGHUP reloads
    mailmodule serve -c FILE --workers N    N processes accepting on the same sockets
    mailmodule -q serve -c FILE         log warnings and errors only, no line per message
    mailmodule serve --log-level debug --log-format json    one JSON object per log line
    mailmodule check-config -c FILE     initialize everything (no_run), start nothing
    mailmodule deliver -c FILE --from A --to B [--to C] < message
    mailmodule meta show FILE           a maddy queue .meta file, pretty-printed
    mailmodule queue -c FILE list|show ID|flush [ID...]|remove ID    a target.queue's messages

-c defaults to $MAILMODULE_CONFIG, else /etc/mailmodule/mailmodule.toml; its format is
in docs/configuration.md. The logging
options (-v, -q, --log-level, --log-format) may come before or after the command.

Exit codes, for scripts: 0 success; 1 a recipient or the message was refused; 2 usage
error; 65 malformed input data; 66 an input file cannot be read; 70 worker processes failed
(they died too often, or did not stop cleanly); 75 temporary failure (try again); 78
configuration error.
"""

from __future__ import annotations

# Only what parsing the arguments needs: `--help` and usage errors must not pay for the
# server (benchmarks/bench_cli.py). Each command imports what it uses.
import argparse
import os
import sys

TYPE_CHECKING = False  # as in mailmodule/__init__.py: typing is not imported for --help
if TYPE_CHECKING:
    import logging
    import socket
    from collections.abc import Callable, Sequence
    from typing import Final, TextIO

    from mailmodule.errors import SMTPError
    from mailmodule.server import Server

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_NOINPUT",
    "EX_REFUSED",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_USAGE",
    "main",
]

EX_REFUSED: Final = 1
EX_USAGE: Final = 2
EX_DATAERR: Final = 65
EX_NOINPUT: Final = 66
EX_SOFTWARE: Final = 70
EX_TEMPFAIL: Final = 75
EX_CONFIG: Final = 78


_DEFAULT_CONFIG: Final = "/etc/mailmodule/mailmodule.toml"
_LEVELS: Final = ("debug", "info", "warning", "error")


def _logging_options(*, suppress: bool) -> argparse.ArgumentParser:
    """The logging options, shared by the main parser and every subparser so that they may
    come before or after the command. The subparsers' copies default to SUPPRESS: an
    option given only before the command is not reset by the subparser."""
    parent = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    loudness = parent.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="log at debug level"
    )
    loudness.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="log warnings and errors only, not each message",
    )
    loudness.add_argument(
        "--log-level", choices=_LEVELS, default=default(None), help="default: info"
    )
    parent.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=default("text"),
        help="text lines, or one JSON object per line (default: text)",
    )
    return parent


def _parser() -> argparse.ArgumentParser:
    config = os.environ.get("MAILMODULE_CONFIG") or _DEFAULT_CONFIG
    config_help = (
        "the TOML file describing the server: module instances ([modules.NAME]), the "
        "pipeline ([pipeline]: checks, modifiers, sources, destinations, targets) and the "
        "listeners ([[endpoints]]); `mailmodule modules --describe NAME` lists a module's "
        f"settings, docs/configuration.md the whole format (default: $MAILMODULE_CONFIG, "
        f"else {_DEFAULT_CONFIG})"
    )
    config_epilog = (
        "The configuration format, every table and key, with a complete example: "
        "docs/configuration.md in mailmodule's source."
    )
    common = _logging_options(suppress=True)
    parser = argparse.ArgumentParser(
        prog="mailmodule",
        description="Compose and run mail servers from mailmodule modules.",
        epilog=(
            f"-c FILE defaults to $MAILMODULE_CONFIG, else {_DEFAULT_CONFIG}. "
            "Exit codes: 0 ok, 1 refused, 2 usage, 65 bad data, 66 no input, 75 try again, "
            "78 bad config."
        ),
        parents=[_logging_options(suppress=False)],
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = sub.add_parser(
        "modules", parents=[common], help="list registered modules by prefix, plugins included"
    )
    modules.add_argument(
        "--describe",
        metavar="NAME",
        help="show the settings of module or endpoint NAME: type, default and meaning",
    )
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the server until SIGTERM or SIGINT",
        description="Run the server the configuration describes until SIGTERM or SIGINT.",
        epilog=config_epilog,
    )
    serve.add_argument("-c", "--config", default=config, metavar="FILE", help=config_help)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="worker processes sharing the listening sockets (default 1: this process)",
    )
    check = sub.add_parser(
        "check-config",
        parents=[common],
        help="initialize everything, start nothing",
        description=(
            "Check the configuration: build and initialize every module, the pipeline and "
            "the endpoints, listen on nothing. Exit 0 when it is valid, 78 with the file, "
            "section and key of the first error."
        ),
        epilog=config_epilog,
    )
    check.add_argument("-c", "--config", default=config, metavar="FILE", help=config_help)
    deliver = sub.add_parser(
        "deliver", parents=[common], help="one message from standard input through the pipeline"
    )
    deliver.add_argument("-c", "--config", default=config, metavar="FILE", help=config_help)
    deliver.add_argument("--from", dest="sender", required=True, help="the envelope sender")
    deliver.add_argument("--to", dest="rcpts", action="append", required=True, help="a recipient")
    meta = sub.add_parser("meta", parents=[common], help="maddy queue metadata")
    meta_sub = meta.add_subparsers(dest="meta_command", required=True, metavar="ACTION")
    show = meta_sub.add_parser("show", parents=[common], help="pretty-print a .meta file")
    show.add_argument("file", help="the .meta file")
    # `mailmodule queue`: the actions run in mailmodule._queue_cli.
    queue = sub.add_parser("queue", parents=[common], help="the messages in a target.queue")
    queue.add_argument("-c", "--config", default=config, metavar="FILE", help=config_help)
    queue.add_argument("--queue", dest="queue_name", help="the target.queue instance to read")
    queue.add_argument("--location", help="read this queue directory instead of a configured one")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    queue_sub.add_parser("list", parents=[common], help="one line per queued message")
    queue_show = queue_sub.add_parser("show", parents=[common], help="metadata and header")
    queue_show.add_argument("id", help="the message ID")
    flush = queue_sub.add_parser("flush", parents=[common], help="ask the server to retry now")
    flush.add_argument("ids", nargs="*", metavar="ID", help="the messages (default: all)")
    remove = queue_sub.add_parser("remove", parents=[common], help="remove a message")
    remove.add_argument("id", help="the message ID")
    # `dkim keygen` (issue 17); the command itself is in _dkim_cli.
    dkim = sub.add_parser("dkim", parents=[common], help="DKIM keys (modify.dkim)")
    dkim_sub = dkim.add_subparsers(dest="dkim_command", required=True, metavar="ACTION")
    keygen = dkim_sub.add_parser(
        "keygen",
        parents=[common],
        help="write a new private key to OUT and print its DNS TXT record",
        description="Write a new DKIM private key (PKCS #8 PEM, mode 0600) to OUT, its TXT "
        "record beside it (.dns for .key), and print the record as a zone file line. "
        "An existing OUT is never overwritten.",
    )
    keygen.add_argument("--domain", required=True, help="the signing domain (d=)")
    keygen.add_argument("--selector", required=True, help="the selector (s=)")
    keygen.add_argument(
        "--type",
        choices=["ed25519", "rsa", "rsa4096"],
        default="rsa",
        help="rsa (2048 bits, default), rsa4096 or ed25519",
    )
    keygen.add_argument("out", metavar="OUT", help="the private key file to create")
    _add_manage_commands(sub, common, config_help)
    return parser


# The management commands (creds, table, imap-acct); their logic is in mailmodule._manage.

_MANAGE_EXITS: Final = (
    "Exit codes: 0 done; 1 cancelled at the confirmation; 2 usage (bad arguments, an unknown "
    "instance, --instance needed); 65 a user name, key, value or password refused; 66 no "
    "password or value on standard input; 67 no such user, account or key; 69 the instance "
    "cannot do that (a read-only table); 70 any other failure; 73 the user or account exists "
    "already; 75 the storage failed (try again); 78 configuration error; 130 interrupted."
)
_PASSWORD_INPUT: Final = (
    "The password is asked twice on the terminal, or read from standard input (--stdin, "
    "or when standard input is not a terminal): never from the command line."
)
_MANAGE_ACTIONS: Final = {
    "creds": (
        "users and passwords of an auth.pass_table (a PlainUserDB)",
        {
            "list": ("print the users, one a line", None),
            "create": ("add USER with a new password; refuses an existing user", "USER"),
            "password": ("set the password of the existing USER", "USER"),
            "remove": ("delete USER (asks first unless --yes)", "USER"),
        },
    ),
    "table": (
        "the keys and values of a table (changes need table.file, table.sql: a MutableTable)",
        {
            "list": ("print the keys, one a line", None),
            "get": ("print the value (each value of a multi-valued key) of KEY", "KEY"),
            "set": ("set KEY to VALUE, or to standard input with --stdin", "KEY"),
            "remove": ("delete KEY", "KEY"),
        },
    ),
    "imap-acct": (
        "the IMAP accounts of a storage.maildir (a ManageableStorage)",
        {
            "list": ("print the accounts, one a line", None),
            "create": ("add the account USER; refuses an existing one", "USER"),
            "remove": ("delete USER with all its mail (asks first unless --yes)", "USER"),
            "mboxes": ("print the folders of USER, one a line", "USER"),
        },
    ),
}


def _add_manage_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    config_help: str,
) -> None:
    """`creds`, `table` and `imap-acct`, each with its actions; -c, --instance and the
    logging options are taken before or after the action."""
    for command, (summary, actions) in _MANAGE_ACTIONS.items():
        chosen = argparse.ArgumentParser(add_help=False)
        chosen.add_argument("-c", "--config", default=argparse.SUPPRESS, help=config_help)
        if command != "table":
            chosen.add_argument(
                "--instance",
                default=argparse.SUPPRESS,
                metavar="NAME",
                help="the instance to work on (default: the only one that can)",
            )
        parser = sub.add_parser(
            command,
            parents=[common, chosen],
            help=summary,
            description=f"Manage {summary}. {_MANAGE_EXITS}",
        )
        action_sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for action, (text, operand) in actions.items():
            asks = command == "creds" and action in ("create", "password")
            epilog = f"{_PASSWORD_INPUT} {_MANAGE_EXITS}" if asks else _MANAGE_EXITS
            action_parser = action_sub.add_parser(
                action,
                parents=[common, chosen],
                help=text,
                description=f"{text[0].upper()}{text[1:]}.",
                epilog=epilog,
            )
            if command == "table":
                action_parser.add_argument("instance", metavar="INSTANCE", help="the table")
            if operand is not None:
                action_parser.add_argument("name", metavar=operand)
            if action in ("create", "password"):
                action_parser.add_argument(
                    "--stdin", action="store_true", help="read the password from standard input"
                )
            if command == "table" and action == "set":
                action_parser.add_argument("value", metavar="VALUE", nargs="?")
                action_parser.add_argument(
                    "--stdin", action="store_true", help="read VALUE from standard input"
                )
            if action == "remove" and command != "table":
                action_parser.add_argument(
                    "-y", "--yes", action="store_true", help="do not ask for confirmation"
                )


def _manage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import io

    from mailmodule import _manage

    if args.command == "table" and args.action == "set" and (args.value is None) != args.stdin:
        parser.error("table set: give VALUE or --stdin (one of them)")
    request = _manage.Request(
        command=args.command,
        action=args.action,
        config=getattr(args, "config", None)
        or os.environ.get("MAILMODULE_CONFIG")
        or _DEFAULT_CONFIG,
        instance=getattr(args, "instance", None),
        name=getattr(args, "name", None),
        value=getattr(args, "value", None),
        yes=getattr(args, "yes", False),
        stdin=getattr(args, "stdin", False),
    )
    if sys.stdin is None:  # closed (`<&-`): as empty as /dev/null
        console = _manage.Console(
            stdin=io.BytesIO(), out=sys.stdout, err=sys.stderr, interactive=False
        )
    else:
        console = _manage.Console(
            stdin=sys.stdin.buffer, out=sys.stdout, err=sys.stderr, interactive=sys.stdin.isatty()
        )
    return _manage.run(request, console)


class _Version(argparse.Action):
    """`--version`: reads the installed version only when asked, not for every command."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import version

        _say(f"mailmodule {version('mailmodule')}")
        parser.exit()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    # Each parser checks its own -v/-q/--log-level; given on both sides of the command,
    # they are checked here.
    chosen = [args.verbose, args.quiet, args.log_level is not None]
    if sum(chosen) > 1:
        parser.error("choose one of -v, -q and --log-level")
    _configure_logging(
        "debug" if args.verbose else "warning" if args.quiet else args.log_level or "info",
        args.log_format,
    )
    import asyncio

    if args.command == "modules":
        if args.describe is not None:
            return _exit_code(lambda: _describe(args.describe, sys.stdout))
        return _exit_code(lambda: _modules(sys.stdout))
    if args.command == "serve":
        if args.workers == 1:
            return _exit_code(lambda: asyncio.run(_serve(_load(args.config))))
        return _exit_code(lambda: _serve_workers(args.config, args.workers))
    if args.command == "check-config":
        return _exit_code(lambda: _check_config(args.config))
    if args.command == "deliver":
        data = sys.stdin.buffer.read()
        return _exit_code(
            lambda: asyncio.run(_deliver(args.config, args.sender, args.rcpts, data, sys.stdout))
        )
    if args.command == "queue":
        from mailmodule._queue_cli import run_queue_command

        return _exit_code(lambda: run_queue_command(args, sys.stdout))
    if args.command == "dkim":
        from mailmodule import _dkim_cli

        return _exit_code(lambda: _dkim_cli.run(args, sys.stdout))
    if args.command in _MANAGE_ACTIONS:
        return _manage(parser, args)
    return _exit_code(lambda: _meta_show(args.file, sys.stdout))


def _configure_logging(level: str, log_format: str) -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _json_formatter() -> logging.Formatter:
    """One JSON object per line: time (RFC 3339, UTC), level, logger, message, and the
    traceback as `exception` when there is one. (Built here, not at import: logging.)"""
    import datetime
    import json
    import logging

    class JSONFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            entry = {
                "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
            if record.stack_info:
                entry["stack"] = self.formatStack(record.stack_info)
            return json.dumps(entry, ensure_ascii=False)

    return JSONFormatter()


def _say(text: str, out: TextIO | None = None) -> None:
    """Write one line in one write and flush it: the workers of `serve --workers` share
    stdout and stderr, and print's separate write of the newline (unbuffered, as under
    PYTHONUNBUFFERED) would let their lines interleave."""
    stream = sys.stdout if out is None else out
    stream.write(text + "\n")
    stream.flush()


def _exit_code(command: Callable[[], int]) -> int:
    """Run `command`; our errors become their exit codes, with the message on stderr."""
    from mailmodule.errors import ConfigError, DataError, StorageError

    try:
        return command()
    except ConfigError as exc:
        _say(f"mailmodule: configuration error: {exc}", sys.stderr)
        return EX_CONFIG
    except DataError as exc:
        _say(f"mailmodule: malformed data: {exc}", sys.stderr)
        return EX_DATAERR
    except StorageError as exc:
        _say(f"mailmodule: {exc}", sys.stderr)
        return EX_TEMPFAIL


def _modules(out: TextIO) -> int:
    import mailmodule.endpoint  # registers the endpoints
    import mailmodule.modules  # noqa: F401  # registers the reference modules
    from mailmodule.registry import PREFIXES, default_registry

    for error in default_registry.load_plugins():
        print(f"warning: {error}", file=sys.stderr)
    names = default_registry.modules()
    for prefix, interfaces in PREFIXES:
        mine = [n for n in names if n.startswith(prefix)]
        if mine:
            kinds = " or ".join(i.__name__ for i in interfaces)
            print(f"{prefix}*  ({kinds})", file=out)
            for name in mine:
                print(f"  {name}", file=out)
    others = [n for n in names if not any(n.startswith(p) for p, _ in PREFIXES)]
    if others:
        print("other", file=out)
        for name in others:
            print(f"  {name}", file=out)
    print("endpoints", file=out)
    for name in default_registry.endpoints():
        print(f"  {name}", file=out)
    return 0


def _describe(name: str, out: TextIO) -> int:
    """`modules --describe NAME`: the summary and declared settings of a module or an
    endpoint, from the same declarations that check a configuration."""
    import mailmodule.endpoint
    import mailmodule.modules  # noqa: F401  # registers the reference modules
    from mailmodule.config import declared_settings, factory_summary
    from mailmodule.errors import UnknownModuleError
    from mailmodule.registry import default_registry

    factory: object
    try:
        factory = default_registry.get(name)
        kind = "module"
    except UnknownModuleError as exc:
        try:
            factory = default_registry.get_endpoint(name)
            kind = "endpoint"
        except UnknownModuleError:
            _say(f"mailmodule: {exc}", sys.stderr)
            return EX_USAGE
    print(f"{name} ({kind}): {factory_summary(factory)}", file=out)
    settings = declared_settings(factory)
    if settings is None:
        print("  settings not declared (a plugin without SETTINGS)", file=out)
    elif not settings:
        print("  no settings", file=out)
    for setting in settings or ():
        print(f"  {setting.describe()}", file=out)
    return 0


def _load(path: str, *, no_run: bool = False) -> Server:
    from mailmodule.server import Server

    server = Server.from_file(path)
    server.registry.no_run = no_run
    server.initialize()
    return server


def _check_config(path: str) -> int:

    server = _load(path, no_run=True)
    print(
        f"{path}: OK ({len(server.registry.instances())} module(s), "
        f"{len(server.endpoints)} endpoint(s))"
    )
    server.registry.close_all()
    return 0


async def _serve(server: Server, sockets: list[list[socket.socket]] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully; reload on SIGHUP.

    With `sockets` (a worker of `--workers N`), serve on those and leave announcing the
    addresses to the parent; SIGTERM, SIGINT and SIGHUP may arrive blocked, and are
    unblocked once handled here.
    """
    import asyncio
    import signal

    signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    handled = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    for sig in handled:
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
    try:
        bound = await server.start(sockets)
        if sockets is None:
            for name, host, port in bound:
                _say(f"{name} listening on {host}:{port}")
        while (await signals.get()) is signal.SIGHUP:
            refused = await server.reload()
            if refused is None:
                _say(f"reloaded {server.source}")
            else:
                _say(f"reload refused, still serving the running configuration: {refused}")
        _say("shutting down: finishing messages under way (a second signal ends them now)")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.hurry)
    finally:
        await server.stop()
    return 0


def _serve_workers(path: str, workers: int) -> int:
    """`serve --workers N`: check the configuration, bind, fork N workers, supervise them.

    The parent initializes the modules only to check them (no_run) and closes them again:
    each worker builds its own, from the same file, after the fork.
    """
    import asyncio

    from mailmodule._workers import Supervisor

    checked = _load(path, no_run=True)
    try:
        sockets = checked.bind()
    finally:
        checked.registry.close_all()
    try:
        for name, host, port in checked.bound:
            _say(f"{name} listening on {host}:{port}")

        def work(index: int) -> int:
            return _exit_code(lambda: asyncio.run(_serve(_load(path), sockets)))

        return Supervisor(work, workers=workers, fatal=(EX_CONFIG,)).run()
    finally:
        for sock in (s for group in sockets for s in group):
            sock.close()


async def _deliver(path: str, sender: str, rcpts: list[str], data: bytes, out: TextIO) -> int:
    """Deliver `data` as the endpoints would a message from SMTP: CRLF line endings and a
    Received field on top; each recipient's line names where it went."""
    import email.utils

    from mailmodule import address
    from mailmodule.buffer import buffer_body
    from mailmodule.errors import SMTPError
    from mailmodule.header import read_header
    from mailmodule.metadata import MsgMetadata, generate_msg_id
    from mailmodule.pipeline import RecipientStatus
    from mailmodule.smtp._data import normalize_line_endings

    if not data.strip():
        _say("mailmodule: deliver: no message on standard input (it was empty)", sys.stderr)
        return EX_DATAERR
    server = _load(path)
    data = normalize_line_endings(data)
    header, offset = read_header(data)
    body = await buffer_body(memoryview(data)[offset:])
    meta = MsgMetadata(id=generate_msg_id(), original_from=sender)
    hostname = server.hostname if address.is_valid_domain(server.hostname) else "localhost"
    header.add(
        "Received",
        f"from local (mailmodule deliver) by {hostname} with LOCAL id {meta.id}; "
        + email.utils.format_datetime(email.utils.localtime()),
    )
    refused: list[SMTPError] = []
    try:
        delivery = await server.pipeline.start(meta, sender)
        accepted = []
        for rcpt in rcpts:
            try:
                await delivery.add_rcpt(rcpt)
                accepted.append(rcpt)
            except SMTPError as err:
                refused.append(err)
                print(f"{rcpt}: {err}", file=out)
        if accepted:
            try:
                await delivery.body(header, body)
                await delivery.commit()
            except SMTPError:
                await delivery.abort()
                raise
            # Set by the checks, which run with the body.
            junk = " (quarantined: Junk)" if delivery.meta.quarantine else ""
            for record in delivery.recipients:
                if record.given not in accepted:
                    continue
                if record.status is RecipientStatus.DELIVERED:
                    to = ", ".join(record.addresses)
                    reply = f"250 2.0.0 delivered to {to}{junk} (id {meta.id})"
                    print(f"{record.given}: {reply}", file=out)
                elif record.error is not None:
                    refused.append(record.error)
                    print(f"{record.given}: {record.error}", file=out)
        else:
            await delivery.abort()
    except SMTPError as err:
        print(f"message refused: {err}", file=out)
        return EX_TEMPFAIL if err.is_temporary else EX_REFUSED
    finally:
        body.remove()
        await server.stop()
    if refused:
        return EX_TEMPFAIL if all(e.is_temporary for e in refused) else EX_REFUSED
    return 0


def _meta_show(path: str, out: TextIO) -> int:
    import json

    from mailmodule.errors import MetadataError
    from mailmodule.metadata import QueueMetadata

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        _say(f"mailmodule: {path}: cannot read: {exc.strerror}", sys.stderr)
        return EX_NOINPUT
    try:
        queue = QueueMetadata.from_json(data)
        document = json.loads(data)
    except (MetadataError, ValueError) as exc:
        _say(f"mailmodule: {path}: malformed queue metadata: {exc}", sys.stderr)
        return EX_DATAERR
    # from_json ignores unknown keys, as maddy does, so any JSON object reads; one with
    # none of the queue's keys is some other file.
    keys = json.loads(QueueMetadata().to_json())
    if not isinstance(document, dict) or not {k.lower() for k in document} & {
        k.lower() for k in keys
    }:
        _say(
            f"mailmodule: {path}: not queue metadata: it has none of the keys {', '.join(keys)}",
            sys.stderr,
        )
        return EX_DATAERR
    print(json.dumps(json.loads(queue.to_json()), indent=2, ensure_ascii=False), file=out)
    return 0
