"""`mailmodule queue list|show|flush|remove`: the queue directory of a configuration.

cli.py declares the command's arguments; this module runs it, and is imported only then.

The commands read the directory of a `target.queue` instance named in the configuration
file (`--queue NAME` when there are several, `--location DIR` for any directory), without
initializing the server. `flush` writes the queue's control file (see
`mailmodule.modules.queue.request_flush`), which a running server takes within a second;
`remove` takes the message's lock first, so it never removes a message while an attempt
runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from mailmodule.modules.queue import QueueStore

__all__ = ["run_queue_command"]


def run_queue_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the action `args` asks for; returns the exit code.

    Raises:
        ConfigError: no queue directory can be found in the configuration.
        DataError: an ID cannot be a queue message ID.
        StorageError: the directory cannot be read or written.
    """
    from mailmodule.modules.queue import QueueStore, check_id, request_flush

    location = args.location or _configured_location(args.config, args.queue_name)
    if not os.path.isdir(location):
        print(f"mailmodule: no queue directory at {location!r}", file=sys.stderr)
        return os.EX_NOINPUT
    store = QueueStore(location)
    action = args.queue_command
    if action == "list":
        return _list(store, out)
    if action == "show":
        return _show(store, check_id(args.id), out)
    if action == "flush":
        ids = [check_id(i) for i in args.ids]
        request_flush(store.location, ids)
        what = f"{len(ids)} message(s)" if ids else "every message"
        print(f"flush of {what} asked; a running server retries within a second", file=out)
        return 0
    return _remove(store, check_id(args.id), out)


def _configured_location(path: str, name: str | None) -> str:
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
    location = table.get("location")
    if not isinstance(location, str) or not location:
        raise ConfigError(
            "expected a queue directory", file=path, section=f"modules.{inst}", key="location"
        )
    return location


def _list(store: QueueStore, out: TextIO) -> int:
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


def _show(store: QueueStore, message_id: str, out: TextIO) -> int:
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


def _remove(store: QueueStore, message_id: str, out: TextIO) -> int:
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
