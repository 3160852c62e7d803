"""Stopping a training run on SIGTERM or Ctrl-C within a bounded time.

A stop signal sets a flag that the loop checks between steps and updates:
raising from the handler at an arbitrary point could land inside TensorFlow's
tracing, which wraps exceptions. Environment calls are the exception: an env
stepped in this process may never return (a hung simulator, a robot that does
not answer), so a signal that arrives during one raises `Stopped` there and
the loop stops at once. A watchdog thread ends the process `grace` seconds
after the signal if the loop has still not begun to stop by then (an env hung
in native code that never returns to Python); a second signal ends it at
once. Either way the last checkpoint on disk stays intact: every
save is atomic.
"""

import contextlib
import os
import signal
import sys
import threading


class Stopped(BaseException):
    """Raised inside an environment call by a stop signal (not an Exception, so that
    an env's own `except Exception` does not swallow it)."""


class StopSignals:
    """Installs the handlers for SIGTERM and SIGINT while used as a context manager.

    `requested`: the first signal's number, or None. `env_call()` marks a
    stretch (an env step or reset) that a signal may interrupt. `stopping()`
    is called when the loop begins to stop: the watchdog is then disarmed.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, grace=60.0):
        self.grace = grace
        self.requested = None
        self._interruptible = False
        self._previous = {}
        self._watchdog = None
        self._stopping = False

    def __enter__(self):
        # Signal handlers can only be set from the main thread (a notebook's is).
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._watchdog is not None:
            self._watchdog.cancel()

    @property
    def name(self):
        return signal.Signals(self.requested).name if self.requested else None

    def _handle(self, signum, frame):
        if self.requested is not None:
            print(f'{signal.Signals(signum).name} again: exiting now; the last checkpoint on '
                  'disk is kept.', file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.requested = signum
        if self.grace:
            self._watchdog = threading.Timer(self.grace, self._expire)
            self._watchdog.daemon = True
            self._watchdog.start()
        if self._interruptible:
            self._interruptible = False
            raise Stopped()

    def _expire(self):
        if not self._stopping:
            print(f'{self.name}: the run did not stop within {self.grace:g} s (an environment '
                  'call that never returns?); exiting now. The last checkpoint on disk is kept.',
                  file=sys.stderr, flush=True)
            os._exit(128 + self.requested)

    def stopping(self):
        """The loop has begun to stop (it saves and closes next): disarm the watchdog."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()

    @contextlib.contextmanager
    def env_call(self):
        """A stretch that a stop signal interrupts by raising `Stopped`."""
        if self.requested is not None:
            raise Stopped()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False
