"""File-system helpers shared by the modules that write durably or privately."""

from __future__ import annotations

import os

__all__ = ["fsync_dir", "make_private_dirs", "open_private_dir", "open_private_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fsync_dir(path: str) -> None:
    """Make a rename or link in directory `path` durable.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dirs(path: str) -> None:
    """Create `path` and its missing parents, each one this call creates 0700 exactly.

    Directories that already exist keep their mode.

    Raises:
        OSError: a directory cannot be created.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        make_private_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    os.chmod(path, 0o700)  # the umask may have taken more than group and other bits


def open_private_dir(name: str, dir_fd: int, *, create: bool) -> int:
    """Open the directory `name` inside `dir_fd` without following a symlink.

    With `create`, a missing directory is made 0700 exactly, whatever the umask.

    Returns:
        A new file descriptor of the directory; the caller closes it.

    Raises:
        OSError: `name` is missing (and not `create`); ENOTDIR or ELOOP when it is a
            symlink or not a directory; any other failure to create or open it.
    """
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)  # made by a concurrent delivery
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    os.fchmod(fd, 0o700)
    return fd


def open_private_file(name: str, dir_fd: int) -> int:
    """Create the file `name` inside `dir_fd`, 0600 exactly, for writing.

    The file must not exist: a symlink or anything else there is refused, never followed.

    Returns:
        A new file descriptor open for writing; the caller closes it.

    Raises:
        OSError: FileExistsError when `name` exists; any other failure to create it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd
