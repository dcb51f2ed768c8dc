"""Checks that turn a sidecar that cannot run into one clear line (exit code 2), never a traceback.

`StartupError(message)`: the message names the path (or address) and says what to do. Raised by
`Store` (state in use by another process, missing directory, read-only or corrupt database) and
by `server` (port in use); `sidecar.cli` prints it on one line and exits 2.

The state lock: `lock_state(db_path)` takes an exclusive `flock` on `<db>.lock` (which covers the
database and its journal) and writes the holder's pid into it. A second sidecar on the same
state refuses to start instead of silently overwriting the first one's acknowledged data. The
lock is released by the kernel when the process dies, so a kill -9 never leaves it stale.
"""

from __future__ import annotations

import errno
import os
import sqlite3


class StartupError(RuntimeError):
    """The sidecar cannot start; the message is one line naming the path and what to do."""


def check_state_path(db_path: str) -> None:
    """The directory of `db_path` exists and is writable; the file, if any, is writable."""
    directory = os.path.dirname(os.path.abspath(db_path))
    if not os.path.isdir(directory):
        raise StartupError(f"state directory {directory} does not exist (state.db_path / --db {db_path}): "
                           "create it or point --db at an existing directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(f"state directory {directory} is not writable (state.db_path / --db {db_path}): "
                           "fix its permissions or point --db at a writable directory")
    if os.path.exists(db_path) and not os.access(db_path, os.W_OK):
        raise StartupError(f"state file {db_path} is read-only: make it writable (chmod u+w) or point --db "
                           "at another file")


def lock_state(db_path: str) -> int:
    """An fd holding the exclusive lock on `<db_path>.lock`; StartupError when another process holds it."""
    import fcntl

    path = db_path + ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StartupError(f"cannot create the state lock {path}: {e.strerror}; check the directory's "
                           "permissions") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = ""
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        except OSError:
            pass
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StartupError(
                f"state {db_path} is in use by another sidecar (pid {holder or 'unknown'}, lock {path}): stop "
                "that process or give this one its own --db") from None
        raise StartupError(f"cannot lock the state {path}: {e.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_state(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)  # closing the only descriptor releases the flock
        except OSError:
            pass


def describe_db_error(db_path: str, e: sqlite3.Error) -> StartupError:
    text = str(e)
    if "readonly" in text or "read-only" in text:
        return StartupError(f"state file {db_path} is read-only ({text}): make it and its directory writable "
                            "or point --db at another file")
    if "not a database" in text or "malformed" in text or "file is encrypted" in text:
        return StartupError(f"state file {db_path} is corrupt ({text}): move it aside (the journal "
                            f"{db_path}.journal is replayed into a new state) or restore it from a backup")
    return StartupError(f"cannot open the state file {db_path}: {text}")
