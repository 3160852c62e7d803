"""Timing of the compiled update on synthetic batches (no environment, no replay)."""

import time

import numpy as np
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.envs.base import Space


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


def time_update(config, obs_space, act_space, repeats=5, warmup=2):
    """Median and all wall times (s) of `agent.train` after `warmup` calls (incl. tracing)."""
    agent = Agent(obs_space, act_space, config)
    batch = synthetic_batch(obs_space, act_space, config.run.batch_size, config.run.batch_length)
    start = time.perf_counter()
    for _ in range(warmup):
        _block(agent.train(batch))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(agent.train(batch))
        times.append(time.perf_counter() - start)
    return {'median_s': float(np.median(times)), 'times_s': times, 'warmup_s': first}


def _block(metrics):
    return {k: v.numpy() for k, v in metrics.items()}

