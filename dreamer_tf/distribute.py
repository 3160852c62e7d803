"""Data parallelism of the update over devices with `tf.distribute.MirroredStrategy`.

`distribute.strategy: mirrored` places every variable on each device
(`MirroredVariable`) and splits each batch of sequences by rows: replica r of
R takes rows [r B/R, (r+1) B/R). The update (agent.Agent._train_step) runs
in phases, each a replica function followed by a cross-replica step:

1. each replica computes the world-model loss on its rows and its gradient;
   the gradients are averaged over replicas (`strategy.reduce(MEAN)`, the
   all-reduce) and the optimiser applies the mean once, in cross-replica
   context, to every copy;
2. each replica imagines from its own posterior states and computes the
   actor and critic gradients, averaged and applied the same way.

The result equals one device's update on the whole batch, because
- every loss is a mean over rows and the shards are equal, so the mean of
  the replicas' gradients is the gradient of the whole batch's loss;
- random draws do not depend on the split: inside a replica every noise
  tensor is drawn for all R B/R rows with the update's seed and the
  replica's rows are sliced out (`stateless_uniform`, `stateless_normal`),
  exactly the numbers one device draws for those rows;
- DreamerV3's return percentiles are taken over the returns of all replicas
  (`gather`), so every replica uses the same return scale.
Two things differ from one device: the sums of a reduction happen in a
different order (float32 round-off), and Dreaming's InfoNCE takes its
negatives from the replica's rows only (a batch of B/R instead of B).

The optimiser applies its step in cross-replica context because its update
sits in a `tf.cond` (a non-finite gradient skips the step), and an
assignment to a mirrored variable in replica context is a synchronisation
point (`merge_call`) that MirroredStrategy forbids inside control flow.

`distribute.strategy: multi_worker` runs the same replica functions under
`tf.distribute.MultiWorkerMirroredStrategy` across processes: each worker
process is started with `TF_CONFIG` naming the cluster and its own index, the
strategy's collectives all-reduce the gradients across them, and each worker
feeds its own batch of B rows (the global batch is B times the number of
workers; worker w holds rows [w B, (w+1) B) of it). A replica slices its rows
out of its worker's batch, and draws its noise as the one device that updates on
the global batch would (its global replica index), so two workers equal one
process on their batches concatenated in worker order.
"""

import contextlib
import os
import threading

import tensorflow as tf

STRATEGIES = ('none', 'mirrored', 'multi_worker')

_local = threading.local()


def make_strategy(config):
    """The strategy named by `config.distribute`, or None for one device."""
    kind = config.distribute.strategy
    if kind not in STRATEGIES:
        raise ValueError(f'distribute.strategy must be one of {STRATEGIES}, got {kind!r}')
    if kind == 'none':
        return None
    if kind == 'multi_worker':
        return _multi_worker(config)
    devices = list(config.distribute.devices) or _default_devices()
    replicas = len(devices)
    if config.run.batch_size % replicas:
        raise ValueError(
            f'run.batch_size {config.run.batch_size} must be divisible by the {replicas} '
            f'replicas of distribute.strategy mirrored ({devices}); set run.batch_size to a '
            f'multiple of {replicas} or name fewer distribute.devices'
        )
    known = {_canonical(d.name) for d in tf.config.list_logical_devices()}
    missing = [d for d in devices if _canonical(d) not in known]
    if missing or len(set(map(_canonical, devices))) < replicas:
        raise ValueError(
            f'distribute.devices {devices}: each must be a distinct device of this machine '
            f'(unknown: {missing}); available: {sorted(known)}'
        )
    return tf.distribute.MirroredStrategy(devices)


class Replicas:
    """Runs an update's phases on one device or on each replica of `strategy`: `run` a
    replica function, then take the `mean` of its gradients and metrics (the all-reduce)
    or the `first` replica's values (statistics every replica computed alike)."""

    def __init__(self, strategy=None):
        self.strategy = strategy

    def run(self, fn, *args):
        """fn(*args) on one device, or on each replica's rows under a strategy."""
        if self.strategy is None:
            return fn(*args)

        local = len(self.strategy.extended.worker_devices)

        def replica_fn(*args):
            with replica_rows(local):
                return fn(*args)

        return self.strategy.run(replica_fn, args)

    def mean(self, values):
        if self.strategy is None:
            return values
        reduce = lambda x: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, x, axis=None)
        return tf.nest.map_structure(reduce, values)

    def first(self, values):
        if self.strategy is None:
            return values
        return tf.nest.map_structure(
            lambda x: self.strategy.experimental_local_results(x)[0], values
        )


def _multi_worker(config):
    """MultiWorkerMirroredStrategy over the cluster of `TF_CONFIG`, with this worker's
    devices (distribute.devices, or all GPUs, or else the CPU) as its local replicas."""
    if 'TF_CONFIG' not in os.environ:
        raise ValueError(
            'distribute.strategy multi_worker needs TF_CONFIG naming the cluster and this '
            'worker, e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    local = len(strategy.extended.worker_devices)
    if config.run.batch_size % local:
        raise ValueError(
            f'run.batch_size {config.run.batch_size} (each worker\'s batch) must be divisible '
            f'by the {local} replicas of this worker'
        )
    return strategy


def _canonical(name):
    """'/gpu:0', '/device:GPU:0' and the full job path all name .../device:GPU:0."""
    kind, _, index = name.split('/')[-1].replace('device:', '').rpartition(':')
    return f'{kind.upper()}:{index}'


def _default_devices():
    """All GPUs, or else all logical CPU devices."""
    gpus = tf.config.list_logical_devices('GPU')
    return [d.name for d in (gpus or tf.config.list_logical_devices('CPU'))]


@contextlib.contextmanager
def replica_rows(local=None):
    """Inside a replica function: make noise draws and `local_rows` slice this replica's rows.

    `local`: the replicas of this process (all of them, by default); replica ids are
    numbered worker by worker. MirroredStrategy runs each replica's function in its
    own thread, so the replica's index is kept thread-locally.
    """
    ctx = tf.distribute.get_replica_context()
    index, count = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
    local = local or count
    previous = getattr(_local, 'shard', None)
    _local.shard = (index, count, index % local, local)
    try:
        yield
    finally:
        _local.shard = previous


def _shard():
    return getattr(_local, 'shard', None)


def local_rows(x):
    """This replica's rows of its process's batch tensor [B, ...] (x itself outside a
    replica)."""
    shard = _shard()
    if shard is None:
        return x
    _, _, index, count = shard
    rows = x.shape[0] // count
    return tf.gather(tf.reshape(x, [count, rows, *x.shape[1:]]), index)


def _draw(sample, shape, seed):
    shard = _shard()
    if shard is None:
        return sample(shape, seed)
    index, count = shard[:2]
    shape = tf.convert_to_tensor(shape, tf.int32)
    # One device draws [count * rows, ...]; stateless generators fill a shape
    # in row-major order, so [count, rows, ...] holds the same numbers.
    full = sample(tf.concat([[count], shape], 0), seed)
    return tf.gather(full, index)


def stateless_uniform(shape, seed, minval=0, maxval=None, dtype=tf.float32):
    """tf.random.stateless_uniform whose draw for a row does not depend on the replica split."""
    sample = lambda s, sd: tf.random.stateless_uniform(s, sd, minval, maxval, dtype)
    return _draw(sample, shape, seed)


def stateless_normal(shape, seed):
    """tf.random.stateless_normal whose draw for a row does not depend on the replica split."""
    return _draw(tf.random.stateless_normal, shape, seed)


def gather(x):
    """The rows of `x` from all replicas, concatenated in replica order (x outside a replica)."""
    ctx = tf.distribute.get_replica_context()
    if _shard() is None or ctx is None:
        return x
    return ctx.all_gather(x, axis=0)
