r"""Catch: a small gymnasium environment of your own, as dreamer_tf trains on it.

A ball falls down a 5-column, 6-row grid from a random column, one row per step; the
paddle on the bottom row moves left, stays or moves right. Each step with the paddle
under the ball earns 0.1, catching the ball 1, and a new ball falls; missing it ends
the episode (terminated), and catching 20 balls ends it too (truncated). A
uniform-random policy scores about 0.4, one that moves towards the ball about 26.

The observation is a Dict of a Box (the ball's column and row, scaled to [0, 1]) and a
Discrete (the paddle's column): dreamer_tf flattens it into one vector, the Discrete
one-hot. docs/custom_env.md trains DreamerV3 on it in three ways:

    python scripts/train.py --configs dreamerv3 gym cpu --task gym_examples.catch:Catch-v0
    python scripts/train.py --configs dreamerv3 gym cpu --task gym_Catch-v0 \
        --env.imports examples.catch
    dreamer_tf.train(['dreamerv3', 'gym', 'cpu'], env_fn=examples.catch.make_env)
"""

import gymnasium
import numpy as np
from gymnasium import spaces

COLUMNS, ROWS, BALLS = 5, 6, 20


class Catch(gymnasium.Env):
    def __init__(self, balls=BALLS):
        self.observation_space = spaces.Dict({
            'ball': spaces.Box(0.0, 1.0, (2,), np.float32),
            'paddle': spaces.Discrete(COLUMNS),
        })
        self.action_space = spaces.Discrete(3)  # left, stay, right
        self.balls = balls
        self.ball = self.row = self.paddle = self.dropped = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.paddle, self.dropped = COLUMNS // 2, 0
        self._drop()
        return self._obs(), {}

    def step(self, action):
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, COLUMNS - 1))
        if self.row == ROWS - 1:  # the ball was shown on the paddle's row: a new one falls
            self._drop()
        else:
            self.row += 1
        # A little for following the ball, so that the reward is not all at the catch.
        reward, missed = 0.1 * (self.ball == self.paddle), False
        if self.row == ROWS - 1:  # scored in the step that shows the ball on the bottom row
            missed = self.ball != self.paddle
            reward = 0.0 if missed else 1.0
            self.dropped += 1
        return self._obs(), float(reward), missed, self.dropped >= self.balls, {}

    def _drop(self):
        self.ball, self.row = int(self.np_random.integers(COLUMNS)), 0

    def _obs(self):
        ball = np.array([self.ball / (COLUMNS - 1), self.row / (ROWS - 1)], np.float32)
        return {'ball': ball, 'paddle': self.paddle}


def make_env(seed=None):
    """The factory the Python API takes (`env_fn`); `seed` is optional for a factory."""
    return Catch()


gymnasium.register('Catch-v0', entry_point=Catch)
