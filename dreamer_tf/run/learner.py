"""`run.mode: async`: the updates in a thread of their own, concurrent with collection.

The training loop (`run/loop.py` `Session`) collects in the main thread, where a stop
signal can interrupt an env call; the `Learner` thread updates. The train ratio holds as
in the sync loop: the learner updates only while it owes updates (the schedule of
`run/schedule.py` over the policy steps collected so far), and collection waits while the
learner owes more than `run.async_slack` of them. When collection reaches `run.steps` the
learner pays what it owes, so a run ends with the sync loop's number of updates.

Collection acts with its own copy of the policy (`Session.actor`), refreshed from the
learner's weights every `run.policy_refresh` updates; evaluation, logs and checkpoints
take the learner's lock, so they see weights between two updates.
"""

import threading


def copy_policy(source, target):
    """Assigns `target` agent the weights its policy step reads from `source`'s."""
    for src, dst in zip(source.policy_variables(), target.policy_variables()):
        dst.assign(src)


class Learner(threading.Thread):
    """Runs `update()` whenever `owed()` is positive, until `finish()` and nothing is owed,
    or until `stopped()`. `lock` is held during each update."""

    def __init__(self, update, owed, stopped):
        super().__init__(name='learner', daemon=True)
        self.update, self.owed, self.stopped = update, owed, stopped
        self.lock = threading.Lock()
        self.changed = threading.Condition()
        self.error = None
        self._finishing = False

    def run(self):
        try:
            while self._next():
                with self.lock:
                    self.update()
                self.notify()
        except BaseException as error:  # reported by the main thread: `check`
            self.error = error
            self.notify()

    def _next(self):
        """Waits until an update is owed (True) or there is nothing left to do (False)."""
        with self.changed:
            while True:
                if self.stopped():
                    return False
                if self.owed() > 0:
                    return True
                if self._finishing:
                    return False
                self.changed.wait(0.5)

    def notify(self):
        """Wakes whoever waits for a change of the policy steps or the updates."""
        with self.changed:
            self.changed.notify_all()

    def wait_while(self, condition):
        """Blocks the caller while `condition()` holds and the learner is alive."""
        with self.changed:
            while condition() and self.is_alive() and not self.stopped():
                self.changed.wait(0.5)
        self.check()

    def finish(self):
        """Lets the learner pay what it owes, then end; waits for it."""
        self._finishing = True
        self.notify()
        self.join()
        self.check()

    def check(self):
        if self.error is not None:
            raise RuntimeError(f'the learner thread failed: {self.error!r}') from self.error
