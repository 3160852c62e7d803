"""A run's checkpoints: saved every few minutes, restored from the newest intact one.

TensorFlow names the latest checkpoint in a small index file
(`checkpoints/checkpoint`). Lost or cut short, that file makes
`tf.train.latest_checkpoint` report none, and a run that trusted it would
start over and overwrite its own checkpoints. So the checkpoints are found
from their files (`ckpt-N.index`) as well, newest first, and one that cannot
be read is passed over with a warning for the next older one.
"""

import re
import sys
import time
from pathlib import Path

import tensorflow as tf

INDEX = re.compile(r'ckpt-(\d+)\.index')


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into the agent this config builds."""


def saved(directory):
    """Paths (prefixes) of the checkpoints in `directory` by their files, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := INDEX.fullmatch(p.name))]
    return [str(directory / f'ckpt-{n}') for n, _ in sorted(found, reverse=True)]


def candidates(directory):
    """The index's latest checkpoint (if the index is readable), then every saved one."""
    listed = tf.train.latest_checkpoint(str(directory)) if Path(directory).is_dir() else None
    found = saved(directory)
    return list(dict.fromkeys(([listed] if listed else []) + found))


TRAIN_HINT = ('Nothing was changed on disk: train with --restart to move this run aside and '
              'start afresh, or use another --logdir.')


def restore(checkpoint, directory, partial=False, hint=TRAIN_HINT):
    """Restores `checkpoint` (a tf.train.Checkpoint) from the newest checkpoint in
    `directory` that restores, and returns its path (None if there is none).

    `partial`: the files may hold objects that `checkpoint` lacks (evaluation
    restores the agent without the counters). A checkpoint that fails is
    reported on stderr and the next older one tried; CheckpointError if
    every one fails, with the newest's error and `hint`.
    """
    found = candidates(directory)
    errors = []
    for path in found:
        try:
            status = checkpoint.restore(path).assert_existing_objects_matched()
            if partial:
                status.expect_partial()
        except Exception as error:  # any reader failure means an unusable checkpoint
            errors.append(f'{Path(path).name}: {_first_line(error)}')
            continue
        if errors:
            print(f'warning: cannot restore {"; ".join(errors)}. Restored {path}, the newest '
                  'checkpoint that restores.', file=sys.stderr, flush=True)
        return path
    if not found:
        return None
    raise CheckpointError(
        f'no checkpoint in {directory} restores into the agent of this config '
        f'(newest first: {"; ".join(errors)}). The checkpoints are corrupt or were written by '
        f'a different config. {hint}'.rstrip())


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class Checkpointer:
    """tf.train.Checkpoint of agent and counters, saved every few minutes and at exit."""

    def __init__(self, directory, every_secs, **objects):
        self.directory = Path(directory)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = self._manager()
        self.every_secs, self.last = every_secs, time.time()

    def _manager(self):
        return tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=2)

    def restore(self):
        """The newest checkpoint that restores (`restore`); a lost or stale index is
        rewritten to name it, so that later saves number on from it."""
        path = restore(self.checkpoint, self.directory)
        if path and path != self.manager.latest_checkpoint:
            print(f'warning: the checkpoint index {self.directory / "checkpoint"} did not name '
                  f'{Path(path).name}; rewriting it.', file=sys.stderr, flush=True)
            tf.compat.v1.train.update_checkpoint_state(
                str(self.directory), path, all_model_checkpoint_paths=[path])
            self.manager = self._manager()
        return path

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def due(self):
        return time.time() - self.last >= self.every_secs

    def save(self):
        self.manager.save()
        self.last = time.time()
