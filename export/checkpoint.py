"""Restore a training run (config.yaml + checkpoints/) into an agent ready for export."""

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from dreamer_tf.agent import BEHAVIORS, Agent
from dreamer_tf.config import Config, load_config
from dreamer_tf.envs.base import TaskError
from dreamer_tf.envs.from_config import env_args, loop_eval_seed
from dreamer_tf.envs.process import keep_gl_out_of_this_process
from dreamer_tf.run.restore import load_agent
from dreamer_tf_export.policy import ExportError, planet_message


@dataclass
class Run:
    agent: Agent
    config: Config
    checkpoint: str
    counters: dict
    action_space: dict
    preprocess: dict = None  # the env's observation spec (dreamer_tf_runtime.observations)

    def describe(self):
        """The run-dependent part of the metadata."""
        extra = {} if self.preprocess is None else {'preprocess': self.preprocess}
        return {
            **extra,
            'preset': self.config.algo,
            'task': self.config.task,
            'train_step': self.counters['env_steps'],
            'updates': self.counters['updates'],
            'checkpoint': self.checkpoint,
            'action_space': self.action_space,
            # make_env's arguments but the seed: how `scripts/serve.py` rebuilds the
            # env the policy was trained in, without the config or TensorFlow.
            'env': _jsonable(
                {k: v for k, v in env_args(self.config, 0, 'eval').items() if k != 'seed'}
            ),
            'eval_seed': loop_eval_seed(self.config),
        }


def run_config(logdir):
    """Checks that `logdir` holds a run whose policy can be exported; returns its config."""
    path = Path(logdir) / 'config.yaml'
    if not path.exists():
        raise ExportError(f'{path} not found: --logdir must be a training run directory')
    config = load_config([]).update(Config.load(path).to_dict())
    if config.behavior in BEHAVIORS and not BEHAVIORS[config.behavior].exportable:
        raise ExportError(planet_message())
    return config


def load_run(logdir, checkpoint=None):
    """Builds the run's agent and restores `checkpoint` (default: the latest) into it."""
    run_config(logdir)
    # TF and MuJoCo's GL cannot share a process; the spaces need no rendering.
    keep_gl_out_of_this_process()
    try:
        # Export computes in float32 without XLA whatever the run trained with: the
        # weights are float32 variables in every precision, and XLA does not convert.
        # No env is stepped: a rendering env worker could not start from a process
        # whose main module imports TensorFlow (scripts/export.py).
        agent, config, path, spec = load_agent(
            logdir, checkpoint=checkpoint, overrides={'precision': '32', 'jit': 'off'}
        )
    except (FileNotFoundError, RuntimeError, TaskError) as error:
        raise ExportError(str(error)) from None
    counters = {
        key: int(tf.train.load_variable(path, f'counters/{key}/.ATTRIBUTES/VARIABLE_VALUE'))
        for key in ('env_steps', 'updates')
    }
    return Run(agent, config, str(Path(path).resolve()), counters, spec['action_spec'],
               spec['observation_spec'])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value
