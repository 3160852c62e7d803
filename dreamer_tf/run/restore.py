"""A trained run's agent, restored from its run directory for evaluation or export."""

from pathlib import Path

import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import Config, load_config
from dreamer_tf.envs.from_config import env_spec, envs_from_config, eval_seed
from dreamer_tf.run import checkpoint as checkpoints
from dreamer_tf.run.checkpoint import CheckpointError


def run_config(logdir, overrides=()):
    """A run's config.yaml read onto the current defaults (so runs saved before a
    key existed still load), with `overrides`, for evaluation on one device."""
    # Evaluation runs on one device, whatever devices the run trained on.
    overrides = {'distribute.strategy': 'none', **dict(overrides)}
    return load_config([], {**Config.load(Path(logdir) / 'config.yaml').to_dict(), **overrides})


def load_run(logdir, envs=1, seed=None, checkpoint=None, overrides=(), env_fn=None):
    """A run's agent restored from its checkpoint, for evaluation.

    Reads the run's config (`run_config`), builds `envs` eval envs seeded from
    `eval_seed` (with `env_fn`, as the run was trained, if given) and restores
    the agent from `checkpoint` or the latest one. Returns (agent, config,
    BatchEnv, checkpoint path).
    """
    logdir = Path(logdir)
    config = run_config(logdir, overrides)
    check_checkpoints(logdir, checkpoint)
    batch = envs_from_config(config, envs, eval_seed(config, seed), 'eval', env_fn)
    try:
        agent = Agent(batch.obs_space, batch.act_space, config)
        path = restore_agent(agent, logdir, checkpoint)
    except BaseException:
        batch.close()
        raise
    return agent, config, batch, path


def load_agent(logdir, checkpoint=None, overrides=(), env_fn=None):
    """A run's agent restored from its checkpoint, without stepping an environment:
    the spaces come from one built in this process and never reset, so nothing
    renders and no worker process starts (export). Returns (agent, config, path, the
    env's `env_spec`)."""
    logdir = Path(logdir)
    config = run_config(logdir, overrides)
    check_checkpoints(logdir, checkpoint)
    spec = env_spec(config, env_fn)
    agent = Agent(spec['obs_space'], spec['act_space'], config)
    return agent, config, restore_agent(agent, logdir, checkpoint), spec


def check_checkpoints(logdir, checkpoint=None):
    directory = Path(logdir) / 'checkpoints'
    if not checkpoint and not checkpoints.saved(directory):
        raise FileNotFoundError(f'no checkpoint in {directory}')


def restore_agent(agent, logdir, checkpoint=None):
    """Restores `agent` from `checkpoint` or the run's newest one that restores; its path."""
    # Only the agent is restored: the counters in the file are expected leftovers.
    if not checkpoint:
        return checkpoints.restore({'agent': agent}, Path(logdir) / 'checkpoints', partial=True,
                                   hint='')
    try:
        restorable = tf.train.Checkpoint(**checkpoints.as_saved({'agent': agent}, checkpoint))
        restorable.restore(checkpoint).assert_existing_objects_matched().expect_partial()
    except Exception as error:  # any reader failure means an unusable checkpoint
        raise CheckpointError(f'cannot restore the agent from {checkpoint}: {error}') from None
    return checkpoint
