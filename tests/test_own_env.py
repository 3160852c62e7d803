"""Your own environment: by module path, by env.imports and by env_fn (the Python API),
each with two worker processes; nested and discrete observation spaces; clear errors."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

import dreamer_tf
from dreamer_tf.config import ConfigError, load_config
from dreamer_tf.envs import Space, TaskError, make_env
from dreamer_tf.envs.gym import Gym
from dreamer_tf.run.loop import train
from dreamer_tf.run.restore import load_run

# Training runs and commands, end to end (`-m "not slow and not integration"`: unit tests).
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TINY = {'run.steps': 96, 'run.prefill': 64, 'run.train_ratio': 8.0, 'run.log_every': 40,
        'run.eval_every': 1000, 'run.eval_episodes': 1}
# A user's env file: a Dict observation (Box and Discrete), registered under an id.
MODULE = '''
import gymnasium
import numpy as np
from gymnasium import spaces


class Walk(gymnasium.Env):
    def __init__(self):
        self.observation_space = spaces.Dict(
            {'pos': spaces.Box(-1, 1, (1,), np.float32), 'phase': spaces.Discrete(3)})
        self.action_space = spaces.Discrete(2)
        self.pos, self.t = 0.0, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0.0, 0
        return self._obs(), {}

    def step(self, action):
        self.pos = float(np.clip(self.pos + (0.1 if action else -0.1), -1, 1))
        self.t += 1
        return self._obs(), self.pos, False, self.t >= 20, {}

    def _obs(self):
        return {'pos': np.array([self.pos], np.float32), 'phase': self.t % 3}


class TextObs(Walk):
    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Dict(
            {'pos': spaces.Box(-1, 1, (1,), np.float32), 'name': spaces.Text(5)})


def make_env():
    return Walk()


gymnasium.register('OwnEnvTest/{name}-v0', entry_point=Walk)
'''


@pytest.fixture
def own_module(tmp_path, monkeypatch, request):
    """A module of the MODULE env in the working directory, named after the test."""
    name = 'own_env_' + re.sub(r'\W', '_', request.node.name)
    (tmp_path / f'{name}.py').write_text(MODULE.replace('{name}', name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the cwd entry goes with the test
    return name


def config(logdir, **overrides):
    return load_config(['dreamerv3', 'gym', 'debug'], {**TINY, 'logdir': str(logdir), **overrides})


@pytest.mark.parametrize('route', ['module_id', 'imports', 'env_fn'])
def test_own_env_trains_resumes_and_evaluates_with_two_workers(own_module, tmp_path, route,
                                                                capfd):
    run = tmp_path / 'run'
    overrides = {'env.envs': 2}
    if route == 'module_id':
        overrides['task'] = f'gym_{own_module}:OwnEnvTest/{own_module}-v0'
    elif route == 'imports':
        overrides.update({'task': f'gym_OwnEnvTest/{own_module}-v0', 'env.imports': [own_module]})
    if route == 'env_fn':
        sys.path.insert(0, str(tmp_path))
        env_fn = importlib.import_module(own_module).make_env
        policy = dreamer_tf.train(['dreamerv3', 'gym', 'debug'], {**TINY, **overrides},
                                  logdir=run, env_fn=env_fn)
        agent = policy.agent
        assert policy.config.task == f'gym_{own_module}:make_env'
    else:
        agent, _ = train(config(run, **overrides))
    assert agent.obs_space == {'vector': Space((4,), np.float32)}  # pos + one-hot phase
    assert int(agent.model_opt.step.numpy()) >= 2
    # The run directory alone names the env: resume and evaluate without repeating it.
    capfd.readouterr()
    task = f'gym_{own_module}:make_env' if route == 'env_fn' else overrides['task']
    _, counters = train(config(run, **{**overrides, 'task': task, 'run.steps': 136}))
    assert 'Resumed from' in capfd.readouterr().out and counters.env_steps.numpy() >= 136
    loaded = dreamer_tf.load(run)
    returns = loaded.evaluate(episodes=2)
    assert len(returns) == 2 and all(np.isfinite(returns))
    env = loaded.make_env()
    obs, state = env.reset(), loaded.initial_state()
    action, state = loaded(obs, state)
    assert action.shape == (2,) and env.step(action)['vector'].shape == (4,)


def test_an_env_fn_that_workers_cannot_rebuild_fails_saying_why(tmp_path):
    make = lambda: gymnasium.make('CartPole-v1')  # noqa: E731 - the point: not picklable
    with pytest.raises(ConfigError, match=r'cannot be sent to env worker processes .* top level'):
        dreamer_tf.train(['dreamerv3', 'gym', 'debug'], {'env.envs': 2}, logdir=tmp_path / 'a',
                         env_fn=make)
    assert not (tmp_path / 'a').exists()
    # Stepped in this process, any callable does; the run then needs it to be evaluated.
    policy = dreamer_tf.train(['dreamerv3', 'gym', 'debug'], TINY, logdir=tmp_path / 'b',
                              env_fn=make)
    assert len(policy.evaluate(episodes=1)) == 1
    with pytest.raises(TaskError,
                       match=r'pass it again, dreamer_tf.train\(\.\.\., env_fn=\.\.\.\)'):
        load_run(tmp_path / 'b')
    assert len(dreamer_tf.load(tmp_path / 'b', env_fn=make).evaluate(episodes=1)) == 1


@pytest.mark.parametrize('task, message', [
    ('gym_no_such_module_xyz:Walk-v0', "cannot import module 'no_such_module_xyz' \\(task "
                                       'gym_no_such_module_xyz:Walk-v0\\): no such module'),
    ('gym_{module}:Nothing-v0', "module '{module}' registers no gymnasium env 'Nothing-v0' and "
                                "has no callable 'Nothing-v0' \\(it registers OwnEnvTest/"),
    ('gym_{module}:TextObs', "Observation space Text\\(.*\\) under key 'name' is not supported"),
])
def test_a_bad_own_env_fails_in_one_line_before_the_run_directory(own_module, tmp_path, task,
                                                                   message):
    run = tmp_path / 'run'
    result = subprocess.run(
        [sys.executable, str(ROOT / 'scripts' / 'train.py'), '--configs', 'dreamerv3', 'gym',
         'debug', '--task', task.format(module=own_module), '--env.envs', '2',
         '--logdir', str(run)], capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in result.stderr.splitlines()
             if not re.match(r'[EIW]\d{4} |WARNING: All log messages', line)]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
    assert re.match('error: ' + message.format(module=own_module), lines[0]), lines[0]
    assert not run.exists()


class Fixed(gymnasium.Env):
    """Returns one fixed observation of any space."""

    def __init__(self, observation_space, observation):
        self.observation_space, self.action_space = observation_space, spaces.Discrete(2)
        self.observation = observation

    def reset(self, seed=None, options=None):
        return self.observation, {}

    def step(self, action):
        return self.observation, 0.0, False, False, {}


def test_nested_and_discrete_observations_flatten_into_the_vector():
    image = np.full((8, 8, 3), 7, np.uint8)
    space = spaces.Dict({
        'pos': spaces.Box(-1, 1, (2,), np.float32),
        'mode': spaces.Discrete(3, start=1),
        'flags': spaces.MultiBinary(2),
        'cell': spaces.MultiDiscrete([2, 3]),
        'arm': spaces.Dict({'joint_pos': spaces.Box(-1, 1, (1,), np.float32)}),
        'tup': spaces.Tuple((spaces.Discrete(2), spaces.Box(0, 1, (1,), np.float32))),
        'cam': spaces.Dict({'front': spaces.Box(0, 255, (8, 8, 3), np.uint8)}),
    })
    obs = {'pos': np.array([0.5, -0.5], np.float32), 'mode': 3, 'flags': np.array([1, 0], np.int8),
           'cell': np.array([1, 2]), 'arm': {'joint_pos': np.array([0.25], np.float32)},
           'tup': (1, np.array([0.75], np.float32)), 'cam': {'front': image}}
    env = Gym(Fixed(space, obs))
    assert env.obs_space == {'cam_front': Space((8, 8, 3), np.uint8),
                             'vector': Space((1 + 5 + 2 + 3 + 2 + 2 + 1,), np.float32)}
    out = env.reset()
    # Leaves in the order of their names: arm_joint_pos, cell, flags, mode, pos, tup_0, tup_1.
    expected = [0.25, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0.5, -0.5, 0, 1, 0.75]
    np.testing.assert_array_equal(out['vector'], np.array(expected, np.float32))
    np.testing.assert_array_equal(out['cam_front'], image)
    clash = spaces.Dict({'a_b': spaces.Discrete(2), 'a': spaces.Dict({'b': spaces.Discrete(2)})})
    with pytest.raises(TaskError, match="both flatten to 'a_b'"):
        Gym(Fixed(clash, None))


def test_frozen_lake_observations_are_one_hot():
    env = make_env('gym_FrozenLake-v1', seed=0)
    assert env.obs_space == {'vector': Space((16,), np.float32)}
    np.testing.assert_array_equal(env.reset()['vector'], np.eye(16, dtype=np.float32)[0])
