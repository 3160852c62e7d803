"""Environments behind one interface; see ``dreamer_tf.envs.base``.

Suite modules are imported lazily so that importing this package does not pull
in gymnasium, dm_control or MuJoCo.
"""

import math

from dreamer_tf.envs.base import ActionRepeat, ActSpace, Space, TimeLimit

__all__ = ['make_env', 'Space', 'ActSpace', 'ActionRepeat', 'TimeLimit']

SUITES = {
    'gym': 'gym_CartPole-v1, gym_Pendulum-v1',
    'dmc': 'dmc_walker_walk, dmc_ball_in_cup_catch',
}
OBS_MODES = ('proprio', 'vision')
MODES = ('train', 'eval')


def make_env(task, *, seed=0, action_repeat=1, time_limit=0, size=(64, 64),
             obs='proprio', camera=None, mode='train'):
    """Creates the environment named ``<suite>_<name>``.

    Args:
      task: ``gym_<gymnasium id>`` or ``dmc_<domain>_<task>``.
      seed: environment seed.
      action_repeat: env steps per agent step; rewards are summed.
      time_limit: episode length in env steps (before action repeat), or 0 to
        keep only the env's own limit.
      size: (height, width) of image observations.
      obs: ``'proprio'`` for the env's own observations or ``'vision'`` for
        rendered ``image`` frames.
      camera: dm_control camera id (None for the per-domain default).
      mode: ``'train'`` or ``'eval'``; no current suite differs between them.
    """
    if obs not in OBS_MODES:
        raise ValueError(f'obs must be one of {OBS_MODES}, got {obs!r}.')
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}.')
    suite, _, name = task.partition('_')
    if suite not in SUITES or not name:
        examples = '; '.join(f'{s}: {e}' for s, e in SUITES.items())
        raise ValueError(
            f'Unknown task {task!r}: expected <suite>_<name> with suite one of '
            f'{", ".join(SUITES)} (e.g. {examples}).')
    if suite == 'gym':
        if camera is not None:
            raise ValueError('camera is only supported for dmc tasks.')
        from dreamer_tf.envs.gym import Gym
        env = Gym(name, seed=seed, size=size, pixels=obs == 'vision')
    else:
        from dreamer_tf.envs.dmc import DMC, parse_task
        env = DMC(*parse_task(name), obs=obs, size=size, camera=camera, seed=seed,
                  repeat=action_repeat)
    if action_repeat != 1 and suite != 'dmc':
        env = ActionRepeat(env, action_repeat)
    if time_limit:
        # Round up so that the episode covers at least time_limit env steps.
        env = TimeLimit(env, math.ceil(time_limit / action_repeat))
    return env
