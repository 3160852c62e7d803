"""Every preset's metrics after two updates on fixed data: the check that a change to the
code around the core (a refactoring) changed no computation.

    python -m dreamer_tf.diagnostics.fingerprint --write tests/data/fingerprints.json

Each preset is built at `debug` size; its trainable variables are then set from their
names (a generator seeded by each variable's name), so the numbers do not depend on the
order in which modules create their variables. Two updates on synthetic batches follow,
and one policy step with and without exploration. `tests/test_fingerprint.py` compares
the result with the stored file.
"""

import argparse
import json
import zlib

import numpy as np
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.envs.base import ActSpace, Space

IMAGE = {'image': Space((64, 64, 3), np.uint8)}
VECTOR = {'vector': Space((5,), np.float32)}
# preset: (config blocks, observation space, discrete actions)
CASES = {
    'planet': (['planet', 'dmc_vision', 'debug'], IMAGE, False),
    'dreamerv1': (['dreamerv1', 'dmc_vision', 'debug'], IMAGE, False),
    'dreamerv2': (['dreamerv2', 'atari', 'debug'], {'image': Space((64, 64, 1), np.uint8)}, True),
    'dreamerv2-dmc': (['dreamerv2', 'dmc_proprio', 'debug'], VECTOR, False),
    'dreamerv3': (['dreamerv3', 'gym', 'debug'], {**IMAGE, **VECTOR}, True),
    'dreamerv3-dmc': (['dreamerv3', 'dmc_proprio', 'debug'], VECTOR, False),
    'dreamingv1': (['dreamingv1', 'dmc_vision', 'debug'], IMAGE, False),
    'dreamingv2': (['dreamingv2', 'dmc_vision', 'debug'], IMAGE, False),
}


def seed_by_name(agent):
    """Sets the agent's trainable variables from generators seeded by their names."""
    for var in agent.variables:
        if var.trainable:
            rng = np.random.default_rng(zlib.crc32(var.name.encode()))
            var.assign(0.1 * rng.standard_normal(var.shape).astype(var.dtype.as_numpy_dtype))


def fingerprint(blocks, obs_space, discrete, updates=2):
    """{metric: value} after `updates` updates, plus the sums of the actions of one policy
    step without (`policy_mode`) and with (`policy_explore`) exploration."""
    config = load_config(blocks)
    act_space = ActSpace(discrete, 3)
    agent = Agent(obs_space, act_space, config)
    seed_by_name(agent)
    for seed in range(updates):
        data = synthetic_batch(obs_space, act_space, 2, 8, seed=seed)
        metrics = agent.update(data, tf.constant([seed, 7], tf.int64))
    result = {k: float(v) for k, v in sorted(metrics.items())}
    obs = {k: v[:, 0] for k, v in data.items() if k in obs_space or k == 'is_first'}
    for name, explore in (('policy_mode', False), ('policy_explore', True)):
        action, _ = agent.policy_step(obs, agent.initial_state(2), tf.constant([1, 2], tf.int64),
                                      explore)
        result[name] = float(tf.reduce_sum(action))
    return result


def all_fingerprints():
    return {name: fingerprint(*case) for name, case in CASES.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--write', help='write the fingerprints to this JSON file')
    args = parser.parse_args(argv)
    result = all_fingerprints()
    text = json.dumps(result, indent=1, sort_keys=True) + '\n'
    if args.write:
        with open(args.write, 'w') as file:
            file.write(text)
    print(text, end='')


if __name__ == '__main__':
    main()
