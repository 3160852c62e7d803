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
from tensorflow.core.protobuf import trackable_object_graph_pb2

from dreamer_tf.fileio import write_atomic
from dreamer_tf.planner import Planner

INDEX = re.compile(r'ckpt-(\d+)\.index')
INDEX_FILE = 'checkpoint'  # TensorFlow's index of a directory's checkpoints
OBJECT_GRAPH = '_CHECKPOINTABLE_OBJECT_GRAPH'


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into the agent this config builds."""


def saved(directory):
    """Paths (prefixes) of the checkpoints in `directory` by their files, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := INDEX.fullmatch(p.name))]
    return [str(directory / f'ckpt-{n}') for n, _ in sorted(found, reverse=True)]


def listed(directory):
    """The latest checkpoint the index names, or None (no index, or one TensorFlow cannot
    read: cut short, emptied or garbled; some of those it logs, some it raises on)."""
    if not Path(directory).is_dir():
        return None
    try:
        return tf.train.latest_checkpoint(str(directory))
    except Exception:  # a damaged index raises ValueError, UnicodeDecodeError, ...
        return None


def candidates(directory):
    """The index's latest checkpoint (if the index is readable), then every saved one."""
    latest = listed(directory)
    return list(dict.fromkeys(([latest] if latest else []) + saved(directory)))


def write_index(directory, path):
    """A fresh index naming `path` (TensorFlow's text format), written atomically."""
    name = Path(path).name
    write_atomic(Path(directory) / INDEX_FILE,
                 f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')


TRAIN_HINT = ('Nothing was changed on disk: train with --restart to move this run aside and '
              'start afresh, or use another --logdir.')


# Checkpoints written before behaviour and representation were components of the agent
# name the decoder (or Dreaming's contrastive module) as a part of the world model,
# the actor's and critic's optimisers as parts of the agent, and PlaNet's CEM
# `agent/planner`. The world model's optimiser follows its variables in the order of
# their parts' names, which the move changed.
LEGACY_PARTS = ('decoder', 'contrastive')


def as_saved(objects, path):
    """`objects` ({name: trackable}) as the checkpoint at `path` names their parts:
    unchanged, or with the agent seen through `legacy_agent`."""
    if 'agent' not in objects or not set(LEGACY_PARTS) & set(_saved_parts(path, 'agent', 'wm')):
        return objects
    return {**objects, 'agent': legacy_agent(objects['agent'])}


def _saved_parts(path, *names):
    """The names of the parts of the object at `names` in the checkpoint's object graph
    (a variable's key names only one of the paths to it, so keys cannot tell)."""
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(OBJECT_GRAPH))
    node = graph.nodes[0]
    for name in names:
        found = [c.node_id for c in node.children if c.local_name == name]
        if not found:
            return []
        node = graph.nodes[found[0]]
    return [c.local_name for c in node.children]


def legacy_agent(agent):
    """A view of `agent` whose parts sit where `LEGACY_PARTS`' checkpoints keep them;
    restoring into it restores the agent's own variables."""
    view = _parts(agent, skip='behavior')
    view.wm = _parts(agent.wm, skip='representation')
    representation = agent.wm.representation
    if representation.decodes:
        view.wm.decoder = representation.decoder
    else:
        view.wm.contrastive = representation
    view.model_opt = _reordered(agent.model_opt, view.wm.trainable_variables)
    if isinstance(agent.behavior, Planner):
        view.planner = agent.behavior.cem
    else:
        view.behavior = agent.behavior
        for role, optimizer in agent.behavior.optimizers.items():
            setattr(view, f'{role}_opt', optimizer)
    return view


def _reordered(optimizer, params):
    """A view of `optimizer` whose per-variable lists (its variables and moments) follow
    the order of `params`, the same variables."""
    index = {id(v): i for i, v in enumerate(optimizer.params)}
    order = [index[id(v)] for v in params]
    view = _parts(optimizer, skip=None)
    for name, value in vars(optimizer).items():
        if isinstance(value, list) and len(value) == len(order):
            setattr(view, name, [value[i] for i in order])
    return view


def _parts(module, skip):
    view = tf.Module(name=module.name)
    for name, value in vars(module).items():
        if name != skip and isinstance(value, (tf.Module, tf.Variable, tf.random.Generator)):
            setattr(view, name, value)
    return view


def restore(objects, directory, partial=False, hint=TRAIN_HINT):
    """Restores `objects` ({name: trackable}, as tf.train.Checkpoint takes them) from the
    newest checkpoint in `directory` that restores, and returns its path (None if there
    is none).

    `partial`: the files may hold objects that `checkpoint` lacks (evaluation
    restores the agent without the counters). A checkpoint that fails is
    reported on stderr and the next older one tried; CheckpointError if
    every one fails, with the newest's error and `hint`.
    """
    found = candidates(directory)
    errors = []
    for path in found:
        try:
            checkpoint = tf.train.Checkpoint(**as_saved(objects, path))
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
    """tf.train.Checkpoint of agent and counters, saved every few minutes and at exit.

    TensorFlow's CheckpointManager reads the index when it starts and fails on one it
    cannot parse, so it is started after `restore` has found the checkpoint from the
    files and repaired the index.
    """

    def __init__(self, directory, every_secs, **objects):
        self.directory = Path(directory)
        self.objects = objects
        self.checkpoint = tf.train.Checkpoint(**objects)
        self._manager = None
        self.every_secs, self.last = every_secs, time.time()

    @property
    def manager(self):
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, str(self.directory), max_to_keep=2)
        return self._manager

    def restore(self):
        """The newest checkpoint that restores (`restore`); a lost, damaged or stale index
        is rewritten to name it (a damaged one kept beside it), so that later saves
        number on from it."""
        path = restore(self.objects, self.directory)
        if path:
            # Saves number on from the restored one: `restore` reads it through a
            # tf.train.Checkpoint of its own (in the file's layout), not this one.
            self.checkpoint.save_counter.assign(int(path.rsplit('-', 1)[1]))
        if path and path != listed(self.directory):
            index = self.directory / INDEX_FILE
            if index.exists():
                stamp = time.strftime('%Y%m%d-%H%M%S')
                index.replace(index.with_name(f'{INDEX_FILE}.replaced-{stamp}'))
            print(f'warning: the checkpoint index {index} did not name {Path(path).name}; '
                  'rewriting it.', file=sys.stderr, flush=True)
            write_index(self.directory, path)
        return path

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def due(self):
        return time.time() - self.last >= self.every_secs

    def save(self):
        self.manager.save()
        self.last = time.time()
