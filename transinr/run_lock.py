"""One training process per run folder.

Two processes training in one folder would interleave their metrics and overwrite each
other's checkpoints. While a run trains, its folder holds ``run.lock``: the file is
locked with ``flock`` (the kernel drops that lock when the process dies, however it
dies) and holds the owner's PID, host and start time for the error message. A lock file
left by a killed process is therefore stale as soon as its owner is gone, and the next
run takes it over with a warning.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the folder is not guarded there
    fcntl = None

LOCK_NAME = "run.lock"


class RunFolderBusyError(RuntimeError):
    """Another live process is training in this run folder."""


class RunLock:
    """``with RunLock(run_dir):`` — hold the run folder's lock for the block."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if fcntl is None:
            return
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _describe(_read(fd))
                os.close(fd)
                raise RunFolderBusyError(
                    f"{self.path.parent} is in use: {owner} is training in it (lock file {self.path}). "
                    f"Wait for it to finish, stop it, or use another --run-dir"
                ) from None
            # The holder we waited for may have removed the file after we opened it;
            # a lock on a deleted file guards nothing, so open the new one again.
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)
        previous = _read(fd)
        if previous:
            warnings.warn(f"{self.path}: taking over the lock of {_describe(previous)}, which is no "
                          f"longer running (it was killed, or its machine restarted)", stacklevel=3)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock: a process that opened the file meanwhile
        # sees the inode change and opens the new file.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict | None:
    raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except json.JSONDecodeError:
        return {"raw": raw[:80]}
    return record if isinstance(record, dict) else {"raw": raw[:80]}


def _describe(record: dict | None) -> str:
    if not record:
        return "another process"
    if "pid" not in record:
        return f"an unknown process (lock file reads {record.get('raw')!r})"
    where = f" on {record['host']}" if record.get("host") and record["host"] != socket.gethostname() else ""
    since = f", started {record['started']}" if record.get("started") else ""
    return f"process {record['pid']}{where}{since}"
