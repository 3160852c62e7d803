"""Collection speed of worker envs in lockstep.

`python -m dreamer_tf.diagnostics.env_throughput --task atari_pong --action_repeat 4`
measures env steps per second for 1, 2 and 4 envs, with random actions or (--configs)
an agent's batched policy; docs/envs.md has a table.
"""

import argparse
import time

import numpy as np

from dreamer_tf.envs.parallel import process_envs


def random_policy(envs, seed=0):
    """Uniform random actions for every env of a BatchEnv."""
    rng, space, count = np.random.default_rng(seed), envs.act_space, len(envs)

    def act(obs):
        if space.discrete:
            return list(rng.integers(space.n, size=count))
        return list(rng.uniform(-1, 1, (count, space.n)).astype(np.float32))

    return act


def agent_policy(config):
    """A policy factory: an untrained Agent of `config`, one batched call per step."""

    def build(envs):
        from dreamer_tf.agent import Agent
        from dreamer_tf.run.collect import stack_obs

        agent = Agent(envs.obs_space, envs.act_space, config)
        state = [agent.initial_state(len(envs))]

        def act(obs):
            action, state[0] = agent.policy(stack_obs(obs, envs.obs_space), state[0])
            return list(action.numpy())

        return act

    return build


def throughput(count, steps, seed=0, policy=random_policy, **make_args):
    """Collection speed of ``count`` worker envs in lockstep.

    Counts the way the training loop does: action repeat times the agent steps
    of every env, with episodes reset as they end. ``policy(envs)`` returns a
    function from the list of observations to the list of actions. Worker
    start-up and the first call of the policy (tracing) are not timed.

    Returns (env steps per second, seconds per lockstep step spent in the
    policy, i.e. in this process rather than waiting for the workers).
    """
    envs = process_envs(count, seed, **make_args)
    repeat = make_args.get('action_repeat', 1)
    try:
        act = policy(envs)
        obs = envs.reset()
        act(obs)
        start, taken, acting = time.perf_counter(), 0, 0.0
        while taken < steps:
            before = time.perf_counter()
            actions = act(obs)
            acting += time.perf_counter() - before
            obs = envs.step(actions)
            taken += count
            ended = [i for i, out in enumerate(obs) if out['is_last']]
            for i, first in zip(ended, envs.reset(ended) if ended else ()):
                obs[i] = first
        return taken * repeat / (time.perf_counter() - start), acting / (taken / count)
    finally:
        envs.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', required=True)
    parser.add_argument('--envs', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--steps', type=int, default=2000, help='agent steps per measurement')
    parser.add_argument('--action_repeat', type=int, default=1)
    parser.add_argument('--obs', default='proprio', help='gym, dmc: proprio | vision')
    parser.add_argument(
        '--configs', nargs='+', default=None,
        help='act with an untrained agent of these config blocks (whose env settings then '
             'replace --action_repeat and --obs) instead of randomly')
    args = parser.parse_args(argv)
    make_args = {'task': args.task, 'obs': args.obs, 'action_repeat': args.action_repeat}
    policy = random_policy
    if args.configs:
        from dreamer_tf.envs.process import keep_gl_out_of_this_process

        keep_gl_out_of_this_process()
        from dreamer_tf.config import load_config
        from dreamer_tf.envs.from_config import env_args

        config = load_config(args.configs, {'task': args.task})
        make_args = env_args(config, 0)
        del make_args['seed']  # throughput seeds each env
        policy = agent_policy(config)
    print(f'{args.task}, obs {make_args["obs"]}, action repeat {make_args["action_repeat"]}, '
          f'{"agent " + " ".join(args.configs) if args.configs else "random actions"}')
    for count in args.envs:
        rate, acting = throughput(count, args.steps, policy=policy, **make_args)
        print(f'envs {count}: {rate:,.0f} env steps/s, policy {1000 * acting:.1f} ms '
              f'per lockstep step', flush=True)


if __name__ == '__main__':
    main()
