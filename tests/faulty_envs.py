"""Gymnasium envs that misbehave on purpose, registered under `DreamerTfTest/`, for the
reliability tests and the adversarial pass (tests/adversarial.py)."""

import os
import time
from pathlib import Path

import gymnasium
import numpy as np
from gymnasium import spaces

# An env var naming a file that the hanging envs create when they begin to hang.
HUNG_FLAG = 'DREAMER_TF_TEST_HUNG_FLAG'
# An env var naming a file that the exiting env creates before it ends its process; it
# exits only while the file does not exist, so once in all.
EXIT_FLAG = 'DREAMER_TF_TEST_EXIT_FLAG'
# The same for the env that raises an exception: once in all, then it steps on.
RAISE_FLAG = 'DREAMER_TF_TEST_RAISE_FLAG'


class Faulty(gymnasium.Env):
    """A 20-step episode of 4 float observations and 2 actions that goes wrong at
    step `at` of episode `episode` (counted from 0 over this env's life; episode 4
    comes after the `debug` preset's 64 prefill steps): `fault` is
    'nan_obs', 'inf_reward', 'hang' (sleeps for ever), 'stubborn_hang' (sleeps for
    ever and swallows every exception a signal handler raises), 'exit' (ends its
    process, once: see EXIT_FLAG), 'raise' (raises from step, once: see RAISE_FLAG) or
    'no_start' (every reset raises)."""

    def __init__(self, fault='nan_obs', at=5, episode=4):
        self.observation_space = spaces.Box(-1, 1, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.fault, self.at, self.episode = fault, at, episode
        self.episodes, self.t = -1, 0

    def reset(self, seed=None, options=None):
        if self.fault == 'no_start':
            raise RuntimeError('this env cannot start')
        super().reset(seed=seed)
        self.episodes += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = float(action)
        obs = self._obs()
        if self.episodes == self.episode and self.t == self.at:
            if self.fault == 'nan_obs':
                obs[1] = np.nan
            elif self.fault == 'inf_reward':
                reward = np.inf
            elif self.fault == 'hang':
                _flag()
                while True:
                    time.sleep(0.05)
            elif self.fault == 'exit' and not Path(os.environ[EXIT_FLAG]).exists():
                Path(os.environ[EXIT_FLAG]).touch()
                os._exit(1)
            elif self.fault == 'raise' and not Path(os.environ[RAISE_FLAG]).exists():
                Path(os.environ[RAISE_FLAG]).touch()
                raise RuntimeError('this env raised once')
            elif self.fault == 'stubborn_hang':
                _flag()
                while True:
                    try:
                        time.sleep(0.05)
                    except BaseException:  # noqa: BLE001 - the point of this env
                        pass
        return obs, reward, False, self.t >= 20, {}

    def _obs(self):
        return np.full(4, self.t / 20, np.float32)


def _flag():
    if os.environ.get(HUNG_FLAG):
        Path(os.environ[HUNG_FLAG]).touch()


for _name, _fault in [('NanObs', 'nan_obs'), ('InfReward', 'inf_reward'), ('Hang', 'hang'),
                      ('StubbornHang', 'stubborn_hang'), ('Exit', 'exit'),
                      ('Raise', 'raise'), ('NoStart', 'no_start')]:
    gymnasium.register(f'DreamerTfTest/{_name}-v0', entry_point=Faulty, kwargs={'fault': _fault})
