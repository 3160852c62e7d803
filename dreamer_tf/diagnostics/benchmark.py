"""Measurements behind `dreamer-tf benchmark`, on synthetic batches (no environment).

- `time_update`: wall time of the compiled update after warm-up.
- `graph_flops`: floating-point operations of one call of a `tf.function`,
  counted from its graph: matmuls and convolutions (forward and gradient),
  with loop bodies multiplied by their trip count.
- `matmul_peak`: this machine's measured matmul throughput, the roofline.
- `input_wait`: time an update waits for its batch from a filled replay.
- `policy_latency`: the batched policy step for N environments.
- `replay_bytes_per_step`: bytes an episode step takes on disk in the replay.
- `op_profile`: where an update's time goes, by op type, from the TF profiler.
"""

import collections
import glob
import re
import tempfile
import time

import numpy as np
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.behavior import ActorCritic
from dreamer_tf.envs.base import Space
from dreamer_tf.replay import Replay


def synthetic_batch(obs_space, act_space, batch, length, seed=0):
    """A batch shaped like the replay's: random observations, actions and flags,
    with an episode boundary inside the first sequence and one terminal step."""
    rng = np.random.default_rng(seed)
    data = {}
    for key, space in obs_space.items():
        if space.dtype == np.uint8:
            data[key] = rng.integers(0, 255, (batch, length, *space.shape), np.uint8)
        else:
            data[key] = rng.normal(size=(batch, length, *space.shape)).astype(np.float32)
    if act_space.discrete:
        index = rng.integers(act_space.n, size=(batch, length))
        data['action'] = np.eye(act_space.n, dtype=np.float32)[index]
    else:
        data['action'] = rng.uniform(-1, 1, (batch, length, act_space.n)).astype(np.float32)
    data['reward'] = rng.normal(size=(batch, length)).astype(np.float32)
    data['is_first'] = np.zeros((batch, length), bool)
    data['is_first'][:, 0] = True
    data['is_first'][0, length // 2] = True
    data['is_last'] = np.zeros((batch, length), bool)
    data['is_terminal'] = np.zeros((batch, length), bool)
    data['is_terminal'][-1, length - 1] = True
    return {k: tf.constant(v) for k, v in data.items()}


def parse_obs(spec):
    """'vector:17' or 'image:64x64x3' (several joined by ',') -> observation space."""
    space = {}
    for part in spec.split(','):
        kind, _, shape = part.partition(':')
        if kind == 'vector':
            space['vector'] = Space((int(shape),), np.float32)
        elif kind == 'image':
            space['image'] = Space(tuple(int(d) for d in shape.split('x')), np.uint8)
        else:
            raise ValueError(f"observation spec {part!r}: expected 'vector:D' or 'image:HxWxC'")
    return space


def time_update(agent, batch, repeats=5, warmup=2):
    """Median and all wall times (s) of `agent.train` after `warmup` calls (incl. tracing)."""
    start = time.perf_counter()
    for _ in range(warmup):
        wait_for(agent.train(batch))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        wait_for(agent.train(batch))
        times.append(time.perf_counter() - start)
    return {'median_s': float(np.median(times)), 'times_s': times, 'warmup_s': first}


def wait_for(outputs):
    """Waits for a call's tensors (any nest of them) by copying them to numpy."""
    return tf.nest.map_structure(lambda t: t.numpy(), outputs)


def build(config, obs_space, act_space):
    """An agent and a synthetic batch of the config's batch shape."""
    agent = Agent(obs_space, act_space, config)
    batch = synthetic_batch(obs_space, act_space, config.run.batch_size, config.run.batch_length)
    return agent, batch


def param_counts(agent):
    """Trainable parameters of an agent by part (world model; actor and critic where it
    has them), and their total, not counting optimiser state or the slow critic: what
    side-by-sides match between systems."""
    parts = {'world_model': agent.wm}
    if isinstance(agent.behavior, ActorCritic):
        parts.update(actor=agent.behavior.actor, critic=agent.behavior.critic)
    counts = {name: int(sum(np.prod(v.shape) for v in part.trainable_variables))
              for name, part in parts.items()}
    return {**counts, 'total': sum(counts.values())}


def graph_flops(fn, *args):
    """FLOPs of one call of tf.function `fn`, counted from its traced graph.

    Counts 2 * multiply-adds of MatMul, BatchMatMul and convolutions,
    including the gradient ops the tape added; loop bodies count once per
    iteration (`maximum_iterations` of tf.scan's while loops, a constant).
    Only ops that the outputs or a side effect depend on are counted, as the
    runtime prunes the others. Element-wise work is not counted: this is the
    matmul work the roofline bounds.
    """
    graph = fn.get_concrete_function(*args).graph
    return _flops_in(graph, [t.op for t in graph.outputs] + list(graph.control_outputs))


def _flops_in(graph, roots, outer=None):
    """FLOPs of `roots` and what they depend on in `graph`, a function body
    whose inputs `outer` (the calling op and its resolver) gives values to."""
    static = lambda t: _static(t, graph, outer)
    seen, stack, total = set(), list(roots), 0
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
        total += _op_flops(op)
        if op.type in ('While', 'StatelessWhile'):
            trips = static(op.inputs[1])
            if trips is None or trips < 0:
                raise ValueError(f'loop {op.name} has no static trip count')
            body = graph._get_function(op.get_attr('body').name).graph
            total += int(trips) * _flops_in(body, body.get_operations(), (op, static))
        elif op.type in ('PartitionedCall', 'StatefulPartitionedCall'):
            inner = graph._get_function(op.get_attr('f').name).graph
            total += _flops_in(inner, inner.get_operations(), (op, static))
    return total


def _static(tensor, graph, outer):
    """The constant value of a scalar integer tensor, followed through function
    inputs and outputs and through loop variables a while loop passes on
    unchanged (as it does its iteration limit); None if not constant."""
    op = tensor.op
    if op.type == 'Placeholder' and outer is not None:
        names = [t.name for t in graph.inputs]
        if tensor.name in names:
            call, resolve = outer
            return resolve(call.inputs[names.index(tensor.name)])
    if op.type == 'Identity':
        return _static(op.inputs[0], graph, outer)
    if op.type in ('PartitionedCall', 'StatefulPartitionedCall'):
        inner = graph._get_function(op.get_attr('f').name).graph
        out = inner.outputs[tensor.value_index]
        return _static(out, inner, (op, lambda t: _static(t, graph, outer)))
    if op.type in ('While', 'StatelessWhile'):
        body = graph._get_function(op.get_attr('body').name).graph
        index = tensor.value_index
        if body.outputs[index].op is body.inputs[index].op or (
            body.outputs[index].op.type == 'Identity'
            and body.outputs[index].op.inputs[0] is body.inputs[index]
        ):
            return _static(op.inputs[index], graph, outer)
        return None
    return tf.get_static_value(tensor)


def _op_flops(op):
    shape = lambda t: t.shape.as_list()
    if op.type == 'MatMul':
        a, b = shape(op.inputs[0]), shape(op.inputs[1])
        m, k = a[::-1] if op.get_attr('transpose_a') else a
        n = b[0] if op.get_attr('transpose_b') else b[1]
        return 2 * m * k * n
    if op.type in ('BatchMatMul', 'BatchMatMulV2', 'BatchMatMulV3'):
        out = shape(op.outputs[0])
        a = shape(op.inputs[0])
        k = a[-2] if op.get_attr('adj_x') else a[-1]
        return 2 * int(np.prod(out)) * k
    if op.type == 'Conv2D':
        kh, kw, cin, _ = shape(op.inputs[1])
        return 2 * int(np.prod(shape(op.outputs[0]))) * kh * kw * cin
    # Both gradients of a convolution cost what its forward pass costs: one
    # multiply-add per output-gradient element and kernel tap of an input channel.
    if op.type == 'Conv2DBackpropInput':  # also conv2d_transpose's forward pass
        kh, kw, cin, _ = shape(op.inputs[1])
        return 2 * int(np.prod(shape(op.inputs[2]))) * kh * kw * cin
    if op.type == 'Conv2DBackpropFilter':
        kh, kw, cin, _ = shape(op.outputs[0])
        return 2 * int(np.prod(shape(op.inputs[2]))) * kh * kw * cin
    return 0


def matmul_peak(dtype=tf.float32, size=1024, seconds=1.0):
    """Measured throughput (FLOP/s) of a size^3 matmul in `dtype`, the best of 3 runs."""
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)

    @tf.function
    def loop(a, b, reps):
        acc = tf.zeros((), tf.float32)
        for i in tf.range(reps):
            # Depends on i so that no iteration can be hoisted or merged.
            acc += tf.cast(tf.matmul(a + tf.cast(i, dtype), b)[0, 0], tf.float32)
        return acc

    loop(a, b, tf.constant(1)).numpy()
    start = time.perf_counter()
    loop(a, b, tf.constant(2)).numpy()
    reps = max(2, int(seconds / max((time.perf_counter() - start) / 2, 1e-6)))
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        loop(a, b, tf.constant(reps)).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * reps / best


def op_profile(fn, *args, calls=2):
    """Seconds per call of `fn(*args)` spent in each op type, from the TF profiler.

    Counts the innermost op events (named `name:OpType`) of each thread, so the
    total is op time summed over threads: above the wall time when ops run
    in parallel, below it by the time no op runs. An XLA-compiled function is
    one entry, named after it. Warm `fn` up first.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(calls):
                wait_for(fn(*args))
        finally:
            tf.profiler.experimental.stop()
        (path,) = glob.glob(f'{logdir}/**/*.xplane.pb', recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, 'rb') as file:
            space.ParseFromString(file.read())
    times = collections.Counter()
    op_event = re.compile(r'^[^:]+:([A-Za-z_][A-Za-z0-9_]*)$')
    for plane in space.planes:
        for line in plane.lines:
            ops = []
            for event in line.events:
                match = op_event.match(plane.event_metadata[event.metadata_id].name)
                if match:
                    ops.append((event.offset_ps, event.duration_ps, match.group(1)))
            ops.sort()
            for (start, duration, op_type), following in zip(ops, ops[1:] + [None]):
                # An op that encloses the next one (a function call, a loop) is not counted.
                if following is None or following[0] >= start + duration:
                    times[op_type] += duration * 1e-12 / calls
    return dict(times.most_common())


def policy_latency(agent, obs_space, envs, calls=100):
    """Median and 99th-percentile wall time (s) of one batched policy step for `envs` envs."""
    batch = synthetic_batch(obs_space, agent.act_space, envs, 1)
    obs = {k: v[:, 0].numpy() for k, v in batch.items() if k in obs_space or k == 'is_first'}
    state = agent.initial_state(envs)
    for _ in range(3):
        action, state = agent.policy(obs, state)
    action.numpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        action, state = agent.policy(obs, state)
        action.numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.percentile(times, 99))


def input_wait(agent, obs_space, act_space, run, updates=5, episode=500):
    """Mean seconds per update spent waiting on `next()` of the replay's tf.data
    pipeline (prefetching while the update runs), on a replay of synthetic episodes."""
    with tempfile.TemporaryDirectory() as directory:
        replay = Replay(directory, 10**6, run.batch_length, run.batch_size)
        _add_episodes(replay, obs_space, act_space, episode, 4)
        dataset = iter(replay.dataset())
        agent.train(next(dataset))
        waited = 0.0
        for _ in range(updates):
            start = time.perf_counter()
            data = next(dataset)
            waited += time.perf_counter() - start
            wait_for(agent.train(data))
        return waited / updates


def replay_bytes_per_step(obs_space, act_space, steps=200):
    """Bytes per step of an episode file the replay writes (images stay uint8)."""
    with tempfile.TemporaryDirectory() as directory:
        replay = Replay(directory, 10 * steps, 1, 1)
        _add_episodes(replay, obs_space, act_space, steps, 1)
        (path,) = replay.episode_files()
        return path.stat().st_size / steps


def _add_episodes(replay, obs_space, act_space, length, count):
    """Adds `count` copies of one synthetic episode of `length` steps to `replay`."""
    batch = synthetic_batch(obs_space, act_space, 1, length)
    steps = [{k: v[0, t].numpy() for k, v in batch.items()} for t in range(length)]
    for _ in range(count):
        for t, step in enumerate(steps):
            replay.add(dict(step, is_first=t == 0, is_last=t == length - 1, is_terminal=False))
