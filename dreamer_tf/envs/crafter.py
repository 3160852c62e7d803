"""Crafter (Hafner 2021): an open-world survival game with 22 achievements.

Tasks ``crafter_reward`` and ``crafter_noreward`` differ only in whether the
training env returns the reward; evaluation envs always do, as in DreamerV2's
Crafter wrapper (danijar/dreamerv2 train.py: reward for eval mode). Images are
rendered at 64x64 (DreamerV3's Crafter setting); episodes end when the player
dies (terminal) or after Crafter's 10,000-step limit (not terminal).

Each step also carries ``log_achievement_<name>``: 1.0 once the achievement
was unlocked in the current episode. The training loop keeps these out of the
replay and logs their per-episode means, i.e. success rates, and the Crafter
score computed from them (`score`).
"""

import numpy as np

from dreamer_tf.envs.base import (
    ActSpace,
    Space,
    TaskError,
    discrete_action_spec,
    discrete_index,
    ensure_running,
    transition,
)
from dreamer_tf_runtime import observations

TASKS = ('reward', 'noreward')
LOG_PREFIX = 'log_achievement_'


def check_task(task):
    """Raises TaskError, naming the valid tasks, unless `task` is one of `TASKS`."""
    if task not in TASKS:
        raise TaskError(
            f'Unknown Crafter task {task!r}. Valid tasks: '
            f'{", ".join("crafter_" + t for t in TASKS)}.')


def achievements():
    """Names of Crafter's 22 achievements, e.g. 'collect_wood'."""
    import crafter

    return list(crafter.constants.achievements)


def score(success_rates):
    """Crafter score (Hafner 2021, eq. 1): exp(mean(ln(1 + s_i))) - 1, s_i in percent.

    Args:
      success_rates: fractions in [0, 1], one per achievement.
    Returns the score in percent.
    """
    percent = 100.0 * np.asarray(success_rates, np.float64)
    return float(np.exp(np.mean(np.log1p(percent))) - 1.0)


class Crafter:
    """Crafter with 64x64 (or ``size``) images under ``image``; 17 discrete actions.

    Args:
      task: ``'reward'`` or ``'noreward'``.
      size: (height, width) of the rendered image.
      seed: world generation seed.
      mode: ``'train'`` or ``'eval'``; eval always returns rewards.
    """

    def __init__(self, task, *, size=(64, 64), seed=0, mode='train'):
        check_task(task)
        import crafter

        size = tuple(size)
        self._env = crafter.Env(size=size, reward=task == 'reward' or mode == 'eval', seed=seed)
        self._names = achievements()
        self._done = True
        self.act_space = ActSpace(True, self._env.action_space.n)
        self.action_spec = discrete_action_spec(self.act_space.n)
        self.obs_space = {'image': Space((*size, 3), np.uint8)}
        # The runtime's preprocessing of crafter.Env's image, kept in an export's metadata.
        self.observation_spec = {'images': [{'key': 'image', 'path': [], 'size': list(size)}]}

    def reset(self):
        image = self._env.reset()
        self._done = False
        return transition(self._observe(image, {}), is_first=True)

    def step(self, action):
        ensure_running(self._done)
        image, reward, done, info = self._env.step(discrete_index(action, self.act_space.n))
        self._done = done
        # Crafter reports death with discount 0 and the time limit with discount 1.
        return transition(
            self._observe(image, info['achievements']), reward,
            is_last=done, is_terminal=done and info['discount'] == 0)

    def close(self):
        pass

    def _observe(self, image, unlocked):
        obs = observations.preprocess(self.observation_spec, image)
        for name in self._names:
            obs[LOG_PREFIX + name] = np.float32(unlocked.get(name, 0) > 0)
        return obs
