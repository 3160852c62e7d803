"""A run directory's guards: one training process at a time, and no silent fresh start.

The lock is an OS-level lock (`fcntl.flock`) on `run.lock` in the run
directory, held for the training's life. The kernel drops it when the holder
exits, also on `kill -9`, so a stale lock never blocks a resume; the file only
names the last holder's PID for the message a second process gets.
"""

import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then unguarded (see RunLock)
    fcntl = None

LOCK_NAME = 'run.lock'


class RunDirError(RuntimeError):
    """A run directory that this training cannot use as it stands."""


class RunLock:
    """Holds `logdir/run.lock` until `release` (or process exit)."""

    def __init__(self, logdir):
        self.path = Path(logdir) / LOCK_NAME
        self.file = None

    def acquire(self):
        if fcntl is None:
            return self
        file = open(self.path, 'a+')
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or 'another process'
            file.close()
            raise RunDirError(
                f'run directory {self.path.parent} is in use by {holder}: two trainings would '
                'overwrite each other\'s checkpoints. Stop that one first, or use another --logdir.'
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f'process {os.getpid()} on {socket.gethostname()} since '
                   f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
        file.flush()
        self.file = file
        return self

    def release(self):
        if self.file is not None:
            self.file.close()  # closing the last descriptor drops the flock
            self.file = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def holds_run(logdir):
    """Whether `logdir` holds anything of a run besides its lock file."""
    logdir = Path(logdir)
    return logdir.is_dir() and any(p.name != LOCK_NAME for p in logdir.iterdir())


def move_aside(logdir):
    """Renames `logdir` to `<logdir>.replaced-<time>` (one atomic rename, nothing deleted)
    and returns the new path."""
    logdir = Path(logdir)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    target = logdir.with_name(f'{logdir.name}.replaced-{stamp}')
    suffix = 1
    while target.exists():
        suffix += 1
        target = logdir.with_name(f'{logdir.name}.replaced-{stamp}-{suffix}')
    logdir.rename(target)
    return target
