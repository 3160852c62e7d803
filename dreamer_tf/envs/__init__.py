"""Environments behind one interface; see ``dreamer_tf.envs.base``.

Suite modules are imported lazily so that importing this package does not pull
in gymnasium, dm_control, MuJoCo, ale-py, MinAtar or Crafter.
"""

import math

from dreamer_tf.envs.base import ActionRepeat, ActSpace, FlattenImage, Space, TaskError, TimeLimit

__all__ = ['ActSpace', 'ActionRepeat', 'FlattenImage', 'Space', 'TaskError', 'TimeLimit',
           'check_task', 'make_env']

SUITES = {
    'gym': 'gym_CartPole-v1, gym_Pendulum-v1',
    'dmc': 'dmc_walker_walk, dmc_ball_in_cup_catch',
    'atari': 'atari_pong, atari_ms_pacman',
    'minatar': 'minatar_breakout, minatar_space_invaders',
    'crafter': 'crafter_reward, crafter_noreward',
    'toy': 'toy_reach, toy_reach_discrete',
}
OBS_MODES = ('proprio', 'vision')
MODES = ('train', 'eval')


def split_task(task):
    """``'dmc_walker_walk'`` -> ``('dmc', 'walker_walk')``; TaskError for an unknown suite."""
    suite, _, name = task.partition('_')
    if suite not in SUITES or not name:
        examples = '; '.join(f'{s}: {e}' for s, e in SUITES.items())
        raise TaskError(
            f'Unknown task {task!r}: expected <suite>_<name> with suite one of '
            f'{", ".join(SUITES)} (e.g. {examples}).')
    return suite, name


def import_modules(imports):
    """Imports the user's modules of `env.imports` (which may register gymnasium envs)
    in this process; the working directory is searched too."""
    from dreamer_tf.envs.gym import import_user_module

    for module in imports:
        import_user_module(module, 'env.imports')


def check_task(task, imports=()):
    """Raises TaskError, naming valid or close names, unless a suite provides `task`.

    Builds no environment, so a run rejects a misspelt task before it creates
    its run directory or starts environment workers (whose errors would arrive
    wrapped in theirs). Imports the suite's package and `imports` (env.imports);
    for dm_control call it after `process.keep_gl_out_of_this_process` in a
    process that uses TensorFlow.
    """
    import_modules(imports)
    suite, name = split_task(task)
    if suite == 'gym':
        from dreamer_tf.envs.gym import check_id
        check_id(name)
    elif suite == 'dmc':
        from dreamer_tf.envs.dmc import parse_task
        parse_task(name)
    elif suite == 'atari':
        from dreamer_tf.envs.atari import check_game
        check_game(name)
    elif suite == 'minatar':
        from dreamer_tf.envs.minatar import check_game
        check_game(name)
    elif suite == 'crafter':
        from dreamer_tf.envs.crafter import check_task as check_crafter
        check_crafter(name)
    else:
        from dreamer_tf.envs.toy import check_task as check_toy
        check_toy(name)


def make_env(task, *, seed=0, action_repeat=1, time_limit=0, size=(64, 64),
             obs='proprio', camera=None, mode='train', sticky=True, noops=0,
             lives='unused', gray=True, actions='all', flatten=False, imports=(),
             factory=None):
    """Creates the environment named ``<suite>_<name>``.

    Args:
      task: ``gym_<gymnasium id>`` (also ``gym_<module>:<EnvId>`` and
        ``gym_<module>:<class or function>``, see `envs.gym.resolve`),
        ``dmc_<domain>_<task>``, ``atari_<game>``, ``minatar_<game>``,
        ``crafter_reward`` / ``crafter_noreward`` or ``toy_reach`` /
        ``toy_reach_discrete`` (learning checks in minutes).
      seed: environment seed.
      action_repeat: env steps per agent step; rewards are summed. Atari
        repeats inside the adapter, which max-pools the last two frames.
      time_limit: episode length in env steps (before action repeat), or 0 to
        keep only the env's own limit.
      size: (height, width) of image observations.
      obs: ``'proprio'`` for the env's own observations or ``'vision'`` for
        rendered ``image`` frames (gym and dmc only).
      camera: dm_control camera id (None for the per-domain default).
      mode: ``'train'`` or ``'eval'``; Crafter evaluation always has rewards.
      sticky: Atari and MinAtar: the suite's sticky actions (0.25 / 0.1).
      noops: Atari: the most no-op frames at reset.
      lives: Atari: ``'unused'``, ``'terminal'`` or ``'reset'`` on a lost life.
      gray: Atari: greyscale instead of colour images.
      actions: Atari and MinAtar: ``'all'`` or the game's ``'minimal'`` set.
      flatten: give the ``image`` as a flat float ``vector`` in [0, 1].
      imports: modules imported first (``env.imports``: they may register envs).
      factory: a callable returning a gymnasium env, used instead of resolving a
        ``gym_`` task's name (the Python API's ``env_fn``); called with ``seed``
        (and ``render_mode``) where it takes them.
    """
    import_modules(imports)
    if obs not in OBS_MODES:
        raise ValueError(f'obs must be one of {OBS_MODES}, got {obs!r}.')
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}.')
    suite, name = split_task(task)
    if camera is not None and suite != 'dmc':
        raise ValueError('camera is only supported for dmc tasks.')
    repeats_inside = suite in ('dmc', 'atari')
    if factory is not None and suite != 'gym':
        raise ValueError(
            f'an env factory makes gymnasium envs; its task must be gym_..., got {task!r}'
        )
    if suite == 'gym':
        from dreamer_tf.envs.gym import Gym, build
        pixels = obs == 'vision'
        if factory is not None:
            name = build(factory, seed, 'rgb_array' if pixels else None, f'env factory {name}')
        env = Gym(name, seed=seed, size=size, pixels=pixels)
    elif suite == 'dmc':
        from dreamer_tf.envs.dmc import DMC, parse_task
        env = DMC(*parse_task(name), obs=obs, size=size, camera=camera, seed=seed,
                  repeat=action_repeat)
    elif suite == 'atari':
        from dreamer_tf.envs.atari import Atari
        env = Atari(name, repeat=action_repeat, size=size, gray=gray, noops=noops,
                    sticky=sticky, actions=actions, lives=lives, seed=seed)
    elif suite == 'minatar':
        from dreamer_tf.envs.minatar import MinAtar
        env = MinAtar(name, sticky=sticky, actions=actions, seed=seed)
    elif suite == 'crafter':
        from dreamer_tf.envs.crafter import Crafter
        env = Crafter(name, size=size, seed=seed, mode=mode)
    else:
        from dreamer_tf.envs.toy import Reach
        env = Reach(name, seed=seed)
    if action_repeat != 1 and not repeats_inside:
        env = ActionRepeat(env, action_repeat)
    if time_limit:
        # Round up so that the episode covers at least time_limit env steps.
        env = TimeLimit(env, math.ceil(time_limit / action_repeat))
    if flatten:
        env = FlattenImage(env)
    return env
