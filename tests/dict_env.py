"""A gymnasium env with a nested Dict observation of every supported leaf kind, registered as
`DreamerTfTest/Dict-v0`, for tests of observation preprocessing (training and runtime)."""

import gymnasium
import numpy as np
from gymnasium import spaces


class DictObs(gymnasium.Env):
    """20-step episodes; observations move with the actions, so a policy's state matters."""

    def __init__(self):
        self.observation_space = spaces.Dict({
            'pos': spaces.Box(-1, 1, (2,), np.float32),
            'mode': spaces.Discrete(3, start=1),
            'flags': spaces.MultiBinary(2),
            'cell': spaces.MultiDiscrete([2, 3]),
            'arm': spaces.Dict({'joint': spaces.Box(-1, 1, (1,), np.float32)}),
            'cam': spaces.Box(0, 255, (8, 8, 3), np.uint8),
        })
        self.action_space = spaces.Discrete(3)
        self.t, self.pos = 0, np.zeros(2, np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.pos = 0, self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.pos = np.clip(self.pos + 0.1 * (int(action) - 1), -1, 1).astype(np.float32)
        return self._obs(), float(self.pos[0]), False, self.t >= 20, {}

    def _obs(self):
        t = self.t
        image = np.full((8, 8, 3), (37 * t) % 256, np.uint8)
        image[:, :4] = int(127 * (self.pos[0] + 1))
        return {'pos': self.pos.copy(), 'mode': 1 + t % 3, 'flags': np.array([t % 2, 1], np.int8),
                'cell': np.array([t % 2, t % 3]), 'arm': {'joint': self.pos[1:].copy()},
                'cam': image}


gymnasium.register('DreamerTfTest/Dict-v0', entry_point=DictObs)
