"""Asking a running queue to retry now: the control file `.flush` in its directory.

`mailmodule queue flush` appends the IDs to retry (or "*" for all) to `.flush`, one line
each, in one write; the server's queue polls for the file about once a second, takes it
away by renaming it and retries what it names. A file, not a signal: the command needs
no process ID, works for every worker of `serve --workers` (the first to take the file
retries every message it knows), and a request made while no server runs is taken at the
next start. maddy reads only `.meta` files, so the file is nothing to it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import final

import attrs

from mailmodule.errors import DataError, StorageError
from mailmodule.modules.queue._protocol import check_id

__all__ = ["FLUSH_FILE", "FlushRequest", "request_flush", "take_flush"]

FLUSH_FILE = ".flush"
_MAX_REQUEST = 1 << 20  # a larger file is not read: all is retried


@final
@attrs.frozen(kw_only=True)
class FlushRequest:
    """What to retry now: every message (`all`), or those in `ids`."""

    all: bool = False
    ids: frozenset[str] = frozenset()


def request_flush(location: str, ids: Iterable[str] = ()) -> None:
    """Ask the queue in `location` to retry `ids` now (every message when empty).

    Raises:
        DataError: an ID cannot be a queue message ID.
        StorageError: the control file cannot be written.
    """
    lines = [check_id(i) for i in ids] or ["*"]
    data = ("\n".join(lines) + "\n").encode("ascii")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(os.path.join(location, FLUSH_FILE), flags, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot ask the queue in {location!r} to flush: {exc}") from exc


def take_flush(location: str) -> FlushRequest | None:
    """Take the pending request of the queue in `location`, if any, removing the file.

    Lines that are no message ID are ignored; a file too large to be a request asks for
    everything.
    """
    path = os.path.join(location, FLUSH_FILE)
    taken = path + ".taken"
    try:
        os.rename(path, taken)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        fd = os.open(taken, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            data = os.read(fd, _MAX_REQUEST + 1)
        finally:
            os.close(fd)
    except OSError:
        data = b"*"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    if len(data) > _MAX_REQUEST:
        return FlushRequest(all=True)
    ids = set()
    for line in data.decode("ascii", "replace").split():
        if line == "*":
            return FlushRequest(all=True)
        try:
            ids.add(check_id(line))
        except DataError:
            continue
    return FlushRequest(ids=frozenset(ids))
