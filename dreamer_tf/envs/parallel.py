"""Several environments stepped in lockstep, each in its own worker process.

The learner sends every worker its action first and only then waits for the
results, so N envs step concurrently and one step of the batch costs about one
env step, not N: the learner's own work per batch step is one batched policy
call plus pickling N observations.
Collection speed: `python -m dreamer_tf.diagnostics.env_throughput`.
"""

import sys

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
