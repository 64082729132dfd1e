"""`mailmodule queue list|show|flush|remove`: the queue directory of a configuration.

cli.py declares the command's arguments; this module runs it, and is imported only then.

The commands read the directory of a `target.queue` instance named in the configuration
file (`--queue NAME` when there are several, `--location DIR` for any directory), without
initializing the server; a queue whose `store` names a module (`queue.postgres`) is read
through that module, initialized with what it refers to (its blob store) and nothing else.
`flush` writes the queue's control file (see `mailmodule.modules.queue.request_flush`;
for a database, it marks the rows), which a running server takes within a second;
`remove` takes the message's lock first, so it never removes a message while an attempt
runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from mailmodule.modules.queue import QueueStorage

__all__ = ["run_queue_command"]


def run_queue_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the action `args` asks for; returns the exit code.

    Raises:
        ConfigError: no queue directory can be found in the configuration.
        DataError: an ID cannot be a queue message ID.
        StorageError: the directory cannot be read or written.
    """
    from mailmodule.modules.queue import QueueStore

    location, store_ref = (
        (args.location, "") if args.location else _configured(args.config, args.queue_name)
    )
    if store_ref:
        return _with_store(args.config, store_ref, lambda store: _act(args, store, out))
    if not os.path.isdir(location):
        print(f"mailmodule: no queue directory at {location!r}", file=sys.stderr)
        return os.EX_NOINPUT
    return _act(args, QueueStore(location), out)


def _with_store(config: str, ref: str, work: Callable[[QueueStorage], int]) -> int:
    """`work` over the store module `ref` ("&name") of the configuration, closed after."""
    from mailmodule.errors import ConfigError
    from mailmodule.modules.queue import QueueStorage
    from mailmodule.server import Server

    server = Server.from_file(config)
    try:
        server.register_modules()
        store = server.instance(ref.removeprefix("&"))
        if not isinstance(store, QueueStorage):
            raise ConfigError(f"{ref} is not a queue store", file=config, key="store")
        return work(store)
    finally:
        server.registry.close_all()


def _act(args: argparse.Namespace, store: QueueStorage, out: TextIO) -> int:
    from mailmodule.modules.queue import check_id

    action = args.queue_command
    if action == "list":
        return _list(store, out)
    if action == "show":
        return _show(store, check_id(args.id), out)
    if action == "flush":
        ids = [check_id(i) for i in args.ids]
        store.request_flush(ids)
        what = f"{len(ids)} message(s)" if ids else "every message"
        print(f"flush of {what} asked; a running server retries within a second", file=out)
        return 0
    return _remove(store, check_id(args.id), out)


def _configured(path: str, name: str | None) -> tuple[str, str]:
    """The queue directory, or the reference to the store module, of the configuration's
    target.queue (`name`, else its only one)."""
    import tomllib

    from mailmodule.errors import ConfigError

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=path) from exc
    modules = data.get("modules", {})
    queues = {
        inst: table
        for inst, table in (modules.items() if isinstance(modules, dict) else ())
        if isinstance(table, dict) and table.get("module") == "target.queue"
    }
    if name is not None:
        if name not in queues:
            raise ConfigError(
                f"no target.queue instance {name!r} (there are: {', '.join(queues) or 'none'})",
                file=path,
                key="--queue",
            )
        queues = {name: queues[name]}
    if len(queues) != 1:
        raise ConfigError(
            f"expected one target.queue instance, found {len(queues)}: "
            f"{', '.join(queues) or 'none'}; choose with --queue NAME",
            file=path,
            section="modules",
        )
    [(inst, table)] = queues.items()
    store = table.get("store")
    if isinstance(store, str) and store.startswith("&"):
        return "", store
    location = table.get("location")
    if not isinstance(location, str) or not location:
        raise ConfigError(
            "expected a queue directory", file=path, section=f"modules.{inst}", key="location"
        )
    return location, ""


def _list(store: QueueStorage, out: TextIO) -> int:
    from mailmodule.errors import MetadataError

    print("ID\tARRIVAL\tTRIES\tFROM\tTO", file=out)
    for message_id, meta in store.iter_metas():
        if isinstance(meta, MetadataError):
            print(f"{message_id}\t(unreadable: {meta})", file=out)
            continue
        tries = max((meta.tries_count or {}).values(), default=0)
        to = ",".join(_shown(r) for r in meta.to or ())
        print(
            f"{message_id}\t{meta.first_attempt}\t{tries}\t{_shown(meta.from_) or '<>'}\t{to}",
            file=out,
        )
    return 0


def _show(store: QueueStorage, message_id: str, out: TextIO) -> int:
    import json

    from mailmodule.errors import StorageError

    try:
        message = store.read_unclaimed(message_id)
    except StorageError as exc:
        print(f"mailmodule: no such queued message {message_id}: {exc}", file=sys.stderr)
        return os.EX_NOINPUT
    document = json.loads(message.meta.to_json())
    print(json.dumps(document, indent=2, ensure_ascii=False), file=out)
    for field in message.header:  # one line each, nothing a terminal would act on
        print(_shown(field.raw.decode("utf-8", "replace").rstrip("\r\n")), file=out)
    return 0


def _remove(store: QueueStorage, message_id: str, out: TextIO) -> int:
    claim = store.claim(message_id)
    if claim is None:
        if store.exists(message_id):
            print(
                f"mailmodule: message {message_id} is being delivered; try again", file=sys.stderr
            )
            return os.EX_TEMPFAIL
        print(f"mailmodule: no such queued message {message_id}", file=sys.stderr)
        return os.EX_NOINPUT
    with claim:
        claim.remove()
    print(f"removed {message_id}", file=out)
    return 0


def _shown(text: str) -> str:
    """`text` as one line of output: control characters (escape sequences, line breaks)
    shown as "?"."""
    return "".join(c if c.isprintable() or c == "\t" else "?" for c in text)
