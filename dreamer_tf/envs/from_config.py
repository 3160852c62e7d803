"""Environments built from a config's `task` and `env` blocks: one in this process, or a
BatchEnv of several stepped in lockstep in worker processes.

Seeds: training envs get seed, seed + 1, ...; the training loop's evaluation envs (and
the reproduction's scoring, which repeats it) seed + LOOP_EVAL_SEED + i; `dreamer-tf
eval`, export's checks and the diagnostics seed + EVAL_SEED + i, apart from both.
"""

import pickle
import sys

from dreamer_tf.config import ConfigError
from dreamer_tf.envs import check_task, make_env
from dreamer_tf.envs.parallel import NONFINITE, BatchEnv, process_envs
from dreamer_tf.envs.process import ProcessEnv

LOOP_EVAL_SEED = 10_000
EVAL_SEED = 20_000


def loop_eval_seed(config):
    """The first seed of the training loop's evaluation envs."""
    return config.seed + LOOP_EVAL_SEED


def env_args(config, seed, mode='train'):
    """make_env's arguments from the config's `task` and `env` blocks."""
    env = config.env
    return dict(
        task=config.task,
        seed=seed,
        action_repeat=env.action_repeat,
        time_limit=env.time_limit,
        size=tuple(env.size),
        obs=env.obs,
        camera=None if env.camera < 0 else env.camera,
        mode=mode,
        sticky=env.sticky,
        noops=env.noops,
        lives=env.lives,
        gray=env.gray,
        actions=env.actions,
        flatten=env.flatten,
        imports=tuple(env.imports),
    )


def check_process(env):
    if env.process not in ('auto', 'on', 'off'):
        raise ConfigError(f"env.process must be 'auto', 'on' or 'off', got {env.process!r}")
    if env.nonfinite not in NONFINITE:
        raise ConfigError(f'env.nonfinite must be one of {NONFINITE}, got {env.nonfinite!r}')


def uses_workers(config, count):
    """Whether `envs_from_config` steps its envs in worker processes."""
    env = config.env
    rendered = config.task.startswith('dmc_') and env.obs == 'vision'
    return env.process == 'on' or (env.process == 'auto' and (rendered or count > 1))


def check_factory(factory, workers):
    """Fails, saying why and what to do, on an env factory that worker processes
    (started by 'spawn', which pickles it by reference) could not rebuild."""
    if factory is None or not workers:
        return
    fix = ('define it at the top level of a .py module that you import, or train with '
           'env.envs 1 (or env.process off), which steps it in this process')
    try:
        pickle.dumps(factory)
    except Exception as error:  # pickle raises several types for one cause
        raise ConfigError(f'env_fn {factory!r} cannot be sent to env worker processes '
                          f'({error}); {fix}') from None
    main = sys.modules.get('__main__')
    if getattr(factory, '__module__', None) == '__main__' and not hasattr(main, '__file__'):
        raise ConfigError(f'env_fn {factory!r} is defined in a notebook or interactive '
                          f'session, which env worker processes cannot import; {fix}')


def env_from_config(config, seed, mode='train', factory=None):
    env = config.env
    check_process(env)
    args = dict(env_args(config, seed, mode), factory=factory)
    if uses_workers(config, 1):
        return ProcessEnv(env.worker_timeout, **args)
    return make_env(**args)


def envs_from_config(config, count, seed, mode='train', factory=None):
    """A BatchEnv of `count` envs seeded seed, seed + 1, ...

    More than one env runs in worker processes (so they step concurrently)
    unless env.process is 'off'; a single env follows `env_from_config`.
    `factory`: a callable returning the gymnasium env, instead of the task's name
    (the Python API's `env_fn`; `config.task` then only records where it came from).
    """
    if count < 1:
        raise ConfigError(f'env.envs must be >= 1, got {count}')
    check_process(config.env)
    check_factory(factory, uses_workers(config, count))
    if factory is None:
        # Here, not in the workers, whose errors arrive wrapped.
        check_task(config.task, config.env.imports)
    nonfinite = config.env.nonfinite
    if count == 1 or config.env.process == 'off':
        envs = [env_from_config(config, seed + i, mode, factory) for i in range(count)]
        return BatchEnv(envs, nonfinite=nonfinite, name=config.task)
    args = dict(env_args(config, seed, mode), factory=factory)
    del args['seed']  # process_envs seeds each env
    return process_envs(count, seed, config.env.worker_timeout, nonfinite, **args)


def eval_seed(config, seed=None):
    """The eval envs' first seed: `seed`, or the run's seed + EVAL_SEED (unlike training
    and the training loop's evaluation)."""
    return config.seed + EVAL_SEED if seed is None else seed


def env_spec(config, env_fn=None):
    """The run's env as an exported policy needs it: `obs_space`, `act_space`,
    `action_spec` (the env's own actions) and `observation_spec` (its preprocessing, or
    None), from an env built in this process and never reset, so that nothing renders
    and no worker process starts."""
    if env_fn is None:
        check_task(config.task, config.env.imports)
    env = make_env(**env_args(config, eval_seed(config), 'eval'), factory=env_fn)
    spec = {'obs_space': env.obs_space, 'act_space': env.act_space,
            'action_spec': env.action_spec,
            'observation_spec': getattr(env, 'observation_spec', None)}
    env.close()
    return spec
