"""The Python API, for scripts and notebooks: train on your own env, load a run, act.

    import dreamer_tf

    def make_env():                      # at the top level of a module: picklable
        return MyEnv()                   # any gymnasium env (seed and render_mode optional)

    policy = dreamer_tf.train(['dreamerv3', 'gym', 'cpu'], {'run.steps': 30000},
                              logdir='runs/mine', env_fn=make_env)
    print(policy.evaluate(episodes=10))

    policy = dreamer_tf.load('runs/mine')     # later, or in another process
    env = policy.make_env()                   # the env the run trained on, as it saw it
    obs, state = env.reset(), policy.initial_state()
    while not obs['is_last']:
        action, state = policy(obs, state)
        obs = env.step(action)

Training through the API writes the same run directory as `scripts/train.py` and
resumes the same way: call `train` again with the same logdir. An `env_fn` is recorded
in the run's config as the task `gym_<module>:<name>`, so a run whose env_fn lives in
an importable module can also be resumed, evaluated and exported from the command
line; one defined in a notebook or script has to be passed again.

This module imports TensorFlow only when a function is called.
"""

from dreamer_tf.config import ConfigError, load_config

__all__ = ['Policy', 'load', 'train']


def factory_task(env_fn):
    """The task name that records where `env_fn` came from: `gym_<module>:<qualname>`."""
    module = getattr(env_fn, '__module__', None) or '__main__'
    name = getattr(env_fn, '__qualname__', None) or type(env_fn).__qualname__
    return f'gym_{module}:{name}'


def make_config(configs, overrides=None, logdir=None, env_fn=None):
    """The Config of `configs` (block names) and `overrides` (dotted keys), with
    `logdir` and, for an `env_fn`, the task that records it."""
    overrides = dict(overrides or {})
    if logdir is not None:
        overrides['logdir'] = str(logdir)
    if env_fn is not None:
        if not callable(env_fn):
            raise ConfigError(
                f'env_fn must be a callable returning a gymnasium env, got {env_fn!r}'
            )
        if 'task' in overrides:
            raise ConfigError('give a task or an env_fn, not both: the env_fn names the task')
        overrides['task'] = factory_task(env_fn)
    return load_config(list(configs), overrides)


def train(configs=('dreamerv3', 'gym'), overrides=None, *, logdir=None, env_fn=None,
          restart=False):
    """Trains (or resumes) a run and returns its `Policy`.

    Args:
      configs: config block names, as `--configs` takes them (e.g. `['dreamerv3', 'gym', 'cpu']`).
      overrides: dotted keys to values, as the command line's `--key value`
        (e.g. `{'run.steps': 30000, 'env.envs': 4}`).
      logdir: the run directory (else `overrides['logdir']` or the config's).
      env_fn: a callable returning a gymnasium env, instead of `overrides['task']`;
        called with `seed=` and `render_mode=` where it takes them. With worker
        processes (`env.envs` > 1) it must be picklable: a function or class at the top
        level of an importable module.
      restart: move a run found in logdir aside and start a new one.
    """
    config = make_config(configs, overrides, logdir, env_fn)
    from dreamer_tf.run.loop import train as train_loop

    agent, _ = train_loop(config, restart=restart, env_fn=env_fn)
    return Policy(agent, config, env_fn)


def load(logdir, checkpoint=None, env_fn=None):
    """The `Policy` of a run directory, restored from its newest checkpoint (or `checkpoint`).
    `env_fn`: the run's env factory, needed when it was defined in a notebook or script."""
    from dreamer_tf.run.restore import load_run

    agent, config, envs, path = load_run(logdir, checkpoint=checkpoint, env_fn=env_fn)
    envs.close()
    return Policy(agent, config, env_fn, path)


class Policy:
    """A trained agent for acting: `policy(obs, state) -> (action, state)`.

    `obs` is a step of the run's env as dreamer_tf's adapter gives it (`make_env()`):
    a dict with the observation keys (`vector`, images) and `is_first`, for one env
    or with a leading batch dimension for several. The action is what that env's
    `step` takes: one-hot for discrete actions, a vector in [-1, 1] for continuous
    ones. `mode='sample'` draws latent and action instead of taking their modes.
    """

    def __init__(self, agent, config, env_fn=None, checkpoint=None):
        self.agent, self.config, self.env_fn = agent, config, env_fn
        self.checkpoint = checkpoint

    def initial_state(self, batch_size=None):
        return self.agent.initial_state(batch_size or 1)

    def __call__(self, obs, state, mode='mode'):
        import numpy as np

        if mode not in ('mode', 'sample'):
            raise ValueError(f"mode must be 'mode' or 'sample', got {mode!r}")
        single = np.ndim(obs['is_first']) == 0
        keys = (*self.agent.obs_space, 'is_first')
        batch = {k: np.asarray(obs[k])[None] if single else np.asarray(obs[k]) for k in keys}
        action, state = self.agent.policy(batch, state, explore=mode == 'sample', noise=False)
        action = action.numpy()
        return (action[0] if single else action), state

    def make_env(self, seed=None, mode='eval'):
        """The run's env (dreamer_tf's adapter, as training saw it), seeded like evaluation."""
        from dreamer_tf.envs import make_env
        from dreamer_tf.envs.from_config import env_args, eval_seed

        args = env_args(self.config, eval_seed(self.config, seed), mode)
        return make_env(**args, factory=self.env_fn)

    def evaluate(self, episodes=10, seed=None, mode=None):
        """Returns of `episodes` episodes in the run's env (the run's eval policy by default)."""
        from dreamer_tf.envs.from_config import envs_from_config, eval_seed
        from dreamer_tf.run.collect import evaluate

        envs = envs_from_config(self.config, 1, eval_seed(self.config, seed), 'eval', self.env_fn)
        try:
            results = evaluate(self.agent, envs, episodes, mode or self.config.run.eval_policy)
        finally:
            envs.close()
        return [r['return'] for r in results]
