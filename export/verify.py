"""Returns of the exported policy (runtime only) against the TensorFlow policy, same env seeds."""

import numpy as np

from dreamer_tf.envs.from_config import env_from_config, loop_eval_seed
from dreamer_tf_runtime import Policy, run_episodes


def compare_returns(run, onnx_path, episodes, seed=None):
    """Runs `episodes` deterministic episodes with each policy on identically seeded envs.

    Returns a dict: the TF policy's returns, the runtime's returns, and over the
    TF policy's trajectories (the runtime shadowing it on the same observations)
    the largest action difference and the number of steps whose discrete action differs.
    """
    seed = loop_eval_seed(run.config) if seed is None else seed
    agent, discrete = run.agent, run.agent.act_space.discrete
    shadow = Policy(onnx_path, observations='model')
    if shadow.meta['mode'] != 'deterministic':
        raise ValueError(
            f'{onnx_path} is a stochastic export; returns are compared deterministically'
        )
    env = env_from_config(run.config, seed, mode='eval')
    tf_returns, diffs, mismatches, steps = [], [], 0, 0
    try:
        for _ in range(episodes):
            obs, state, total = env.reset(), agent.initial_state(1), 0.0
            shadow.reset()
            while not obs['is_last']:
                action, state = agent.policy(_batch(obs, env.obs_space), state, explore=False)
                action = action.numpy()[0]
                other = shadow.step(obs)
                diffs.append(np.abs(action - other).max())
                mismatches += int(discrete and action.argmax() != other.argmax())
                steps += 1
                obs = env.step(action)
                total += float(obs['reward'])
            tf_returns.append(total)
    finally:
        env.close()
    env = env_from_config(run.config, seed, mode='eval')
    try:
        runtime_returns = run_episodes(Policy(onnx_path, observations='model'), env, episodes)
    finally:
        env.close()
    return {
        'seed': seed,
        'tf_returns': tf_returns,
        'runtime_returns': runtime_returns,
        'steps': steps,
        'max_action_diff': float(max(diffs)),
        'action_mismatches': mismatches,
    }


def _batch(obs, keys):
    return {k: np.asarray(obs[k])[None] for k in (*keys, 'is_first')}
