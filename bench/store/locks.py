"""One lock per run key, so two sweeps (or a sweep and a `bench run`) never train the same key at once.

The lock is an ``fcntl.flock`` on ``<run dir>/.lock``: the kernel releases it when its process dies,
even by SIGKILL, so a lock left behind by a dead process is simply free again (a stale lock is
detected by being acquirable). The file records the holder's pid, host and start time for
progress reports.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from bench._core.errors import BenchError

LOCK_NAME = ".lock"


class RunLock:
    """Non-blocking exclusive lock on a run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False if another live process holds it.

        The lock file is opened without following a symbolic link (a planted link would otherwise
        truncate and overwrite its target); a link or anything but a plain file is a BenchError.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_plain(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _open_plain(path: Path, flags: int) -> int:
    """``os.open`` of a lock file that must be a plain file, never through a symbolic link."""
    fix = "delete it and rerun (survbench creates the lock file itself)"
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if os.path.islink(path):
            raise BenchError(f"{path} is a symbolic link (to {os.readlink(path)}), not a lock file; {fix}") from None
        raise BenchError(f"cannot open lock file {path}: {exc.strerror or exc}; {fix}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BenchError(f"{path} is not a plain file, so it cannot be a lock file; {fix}")
    return fd


def holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds the run's lock right now (pid, host, started), or None if nobody does (or no usable lock file)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = _open_plain(path, os.O_RDONLY)
    except BenchError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
            except (OSError, ValueError):
                return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def remove_partial_files(run_dir: Path) -> list[Path]:
    """Delete temporary files a killed writer left behind (call only while holding the lock)."""
    removed = []
    for p in Path(run_dir).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed
