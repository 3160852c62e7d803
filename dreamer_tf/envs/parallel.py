"""Several environments stepped in lockstep, each in its own worker process.

The learner sends every worker its action first and only then waits for the
results, so N envs step concurrently and one step of the batch costs about one
env step, not N: the learner's own work per batch step is one batched policy
call plus pickling N observations.

`python -m dreamer_tf.envs.parallel --task atari_pong --envs 1 2 4` measures
the env steps per second of random actions (docs/envs.md has a table).
"""

import argparse
import time

import numpy as np

from dreamer_tf.envs.process import ProcessEnv


class BatchEnv:
    """A list of envs with one interface: ``reset`` and ``step`` act on several at once.

    Envs that are `ProcessEnv`s are stepped concurrently; any other env is
    stepped in this process, in turn.
    """

    def __init__(self, envs):
        if not envs:
            raise ValueError('BatchEnv needs at least one env.')
        self.envs = list(envs)
        self.obs_space, self.act_space = self.envs[0].obs_space, self.envs[0].act_space
        for index, env in enumerate(self.envs[1:], 1):
            if (env.obs_space, env.act_space) != (self.obs_space, self.act_space):
                raise ValueError(
                    f'env {index} has spaces {env.obs_space}, {env.act_space}; env 0 has '
                    f'{self.obs_space}, {self.act_space}: a batch needs identical envs.')

    def __len__(self):
        return len(self.envs)

    def reset(self, indices=None):
        """Resets the envs at ``indices`` (default all); returns their first steps."""
        indices = range(len(self.envs)) if indices is None else indices
        return self._call('reset', indices, [None] * len(indices))

    def step(self, actions, indices=None):
        """Steps the envs at ``indices`` (default all) with ``actions[k]`` for the k-th."""
        indices = range(len(self.envs)) if indices is None else indices
        if len(actions) != len(indices):
            raise ValueError(f'got {len(actions)} actions for {len(indices)} envs.')
        return self._call('step', indices, actions)

    def close(self):
        for env in self.envs:
            env.close()

    def _call(self, command, indices, args):
        done = {}
        for index, arg in zip(indices, args):
            env = self.envs[index]
            if isinstance(env, ProcessEnv):
                env.send(command, arg)
            else:
                done[index] = env.reset() if command == 'reset' else env.step(arg)
        return [done[i] if i in done else self.envs[i].receive() for i in indices]


def process_envs(count, seed, **make_args):
    """A BatchEnv of ``count`` worker-process envs seeded ``seed``, ``seed + 1``, ..."""
    envs = [ProcessEnv(**make_args, seed=seed + index) for index in range(count)]
    try:
        return BatchEnv(envs)
    except BaseException:
        for env in envs:
            env.close()
        raise


def throughput(count, steps, seed=0, **make_args):
    """Env steps per second (after action repeat) of ``count`` workers taking random actions.

    Counts the same way as the training loop: action repeat times the agent
    steps of every env, with episodes reset as they end. Worker start-up and
    the first reset are not timed.
    """
    envs = process_envs(count, seed, **make_args)
    rng = np.random.default_rng(seed)
    act_space = envs.act_space
    repeat = make_args.get('action_repeat', 1)
    try:
        envs.reset()
        start, taken = time.perf_counter(), 0
        while taken < steps:
            if act_space.discrete:
                actions = list(rng.integers(act_space.n, size=count))
            else:
                actions = list(rng.uniform(-1, 1, (count, act_space.n)).astype(np.float32))
            outs = envs.step(actions)
            taken += count
            ended = [i for i, out in enumerate(outs) if out['is_last']]
            if ended:
                envs.reset(ended)
        return taken * repeat / (time.perf_counter() - start)
    finally:
        envs.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', required=True)
    parser.add_argument('--envs', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--steps', type=int, default=2000, help='agent steps per measurement')
    parser.add_argument('--action_repeat', type=int, default=1)
    parser.add_argument('--obs', default='proprio', help='gym, dmc: proprio | vision')
    args = parser.parse_args(argv)
    print(f'{args.task}, obs {args.obs}, action repeat {args.action_repeat}')
    for count in args.envs:
        rate = throughput(count, args.steps, task=args.task, obs=args.obs,
                          action_repeat=args.action_repeat)
        print(f'envs {count}: {rate:,.0f} env steps/s', flush=True)


if __name__ == '__main__':
    main()
