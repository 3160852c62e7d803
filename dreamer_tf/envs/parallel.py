"""Several environments stepped in lockstep, each in its own worker process.

The learner sends every worker its action first and only then waits for the
results, so N envs step concurrently and one step of the batch costs about one
env step, not N: the learner's own work per batch step is one batched policy
call plus pickling N observations.

`python -m dreamer_tf.envs.parallel --task atari_pong --action_repeat 4` measures
env steps per second for 1, 2 and 4 envs, with random actions or (--configs)
an agent's batched policy; docs/envs.md has a table.
"""

import argparse
import sys
import time

import numpy as np

from dreamer_tf.envs.process import ProcessEnv, WorkerFailure

NONFINITE = ('stop', 'drop')


class NonFiniteError(RuntimeError):
    """An env returned an observation or reward that is NaN or infinite."""


def nonfinite_key(step):
    """The first key of a step whose float values are not all finite, or None."""
    for key, value in step.items():
        value = np.asarray(value)
        if value.dtype.kind in 'fc' and not np.isfinite(value).all():
            return key
    return None


class BatchEnv:
    """A list of envs with one interface: ``reset`` and ``step`` act on several at once.

    Envs that are `ProcessEnv`s are stepped concurrently; any other env is
    stepped in this process, in turn. A worker that dies or hangs is
    restarted and its env reset: its entry in the returned steps is then the
    first step of a new episode, and its index is listed in ``restarted``
    (until the next call) so that the caller can drop the partial episode.
    A worker that fails `max_restarts` times in a row is given up on.

    A step with a NaN or infinite float value (observation, reward) never
    reaches the caller: with ``nonfinite='stop'`` it raises NonFiniteError
    naming the env, its episode step and the key; with ``'drop'`` the env is
    reset and reported in ``restarted`` like a restarted worker.
    """

    def __init__(self, envs, max_restarts=3, nonfinite='stop', name='env'):
        if not envs:
            raise ValueError('BatchEnv needs at least one env.')
        if nonfinite not in NONFINITE:
            raise ValueError(f'env.nonfinite must be one of {NONFINITE}, got {nonfinite!r}')
        self.envs = list(envs)
        self.max_restarts = max_restarts
        self.nonfinite, self.name = nonfinite, name
        self.restarted = []
        self._failures = [0] * len(self.envs)
        self._steps = [0] * len(self.envs)
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
        done, failed = {}, {}
        self.restarted = []
        for index, arg in zip(indices, args):
            env = self.envs[index]
            if isinstance(env, ProcessEnv):
                try:
                    env.send(command, arg)
                except WorkerFailure as error:
                    failed[index] = error
            else:
                done[index] = env.reset() if command == 'reset' else env.step(arg)
        for index in indices:
            if index in done or index in failed:
                continue
            try:
                done[index] = self.envs[index].receive()
                self._failures[index] = 0
            except WorkerFailure as error:
                failed[index] = error
        done.update({index: self._recover(index, error) for index, error in failed.items()})
        for index in indices:
            self._steps[index] = 0 if command == 'reset' or index in self.restarted else (
                self._steps[index] + 1)
            done[index] = self._finite(index, done[index])
        return [done[i] for i in indices]

    def _finite(self, index, step):
        """`step`, or under 'drop' the first step of a new episode if it is not finite."""
        key = nonfinite_key(step)
        if key is None:
            return step
        where = (f'{self.name} env {index} returned a non-finite {key!r} at step '
                 f'{self._steps[index]} of its episode')
        if self.nonfinite == 'stop':
            raise NonFiniteError(
                f'{where}. Fix the environment, or set --env.nonfinite drop to drop such episodes.')
        if self._steps[index] == 0:
            raise NonFiniteError(f'{where}: a first step cannot be dropped; fix the environment.')
        print(f'warning: {where}; its episode is dropped (env.nonfinite drop).',
              file=sys.stderr, flush=True)
        first = self.envs[index].reset()
        self._steps[index] = 0
        if index not in self.restarted:
            self.restarted.append(index)
        return self._finite(index, first)

    def _recover(self, index, error):
        """Restart a failed worker and reset its env; returns the new first step."""
        while True:
            self._failures[index] += 1
            if self._failures[index] > self.max_restarts:
                raise RuntimeError(
                    f'env {index} failed {self.max_restarts + 1} times in a row; last: {error}'
                ) from error
            print(f'{error}: restarting env {index}, its episode so far is dropped',
                  file=sys.stderr, flush=True)
            try:
                self.envs[index].restart()
                first = self.envs[index].reset()
            except WorkerFailure as again:
                error = again
                continue
            self.restarted.append(index)
            return first


def process_envs(count, seed, timeout=None, nonfinite='stop', **make_args):
    """A BatchEnv of ``count`` worker-process envs seeded ``seed``, ``seed + 1``, ...

    ``timeout``: seconds a worker may take to answer before it is restarted;
    ``nonfinite``: BatchEnv's."""
    envs = [ProcessEnv(timeout, **make_args, seed=seed + index) for index in range(count)]
    try:
        return BatchEnv(envs, nonfinite=nonfinite, name=make_args.get('task', 'env'))
    except BaseException:
        for env in envs:
            env.close()
        raise


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
        from dreamer_tf.run.loop import stack_obs

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
        from dreamer_tf.run.loop import env_args

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
