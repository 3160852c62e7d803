"""MinAtar (Young & Tian 2019): five miniature Atari games on a 10x10 grid.

The state is a 10x10xC boolean array with one channel per object kind
(C = 4 for asterix and breakout, 7 freeway, 10 seaquest, 6 space_invaders).
It is returned as the ``image`` key in uint8 with values 0 and 255, so that
the encoder's image scaling (x / 255 - 0.5, `dreamer_tf.heads`) maps absent
and present to -0.5 and 0.5; `make_env(..., flatten=True)` instead gives a
float ``vector`` of 0s and 1s for MLP encoders (see configs.yaml `minatar`).

MinAtar's own defaults are kept, as the DreamerV2 MinAtar implementation
(RajGhugare19/dreamerv2, utils/wrapper.py `GymMinAtar`) kept them: sticky
actions with probability 0.1, difficulty ramping, and the game's minimal
action set. Episodes end only when the game does (no time limit).
"""

import difflib

import numpy as np

from dreamer_tf.envs.base import (
    ActSpace,
    Space,
    TaskError,
    discrete_action_spec,
    discrete_index,
    ensure_running,
    transition,
)
from dreamer_tf_runtime import observations

GAMES = ('asterix', 'breakout', 'freeway', 'seaquest', 'space_invaders')
ACTION_SETS = ('all', 'minimal')
# MinAtar's default sticky-action probability (Young & Tian 2019).
STICKY_PROB = 0.1


def check_game(game):
    """Raises TaskError, naming the closest and all valid games, if `game` is unknown."""
    if game not in GAMES:
        close = difflib.get_close_matches(game, GAMES, n=1)
        hint = f'Did you mean {close[0]}? ' if close else ''
        raise TaskError(
            f'Unknown MinAtar game {game!r}. {hint}Valid games (task minatar_<game>): '
            f'{", ".join(GAMES)}.')


class MinAtar:
    """One MinAtar game.

    Args:
      game: one of `GAMES`.
      sticky: repeat the previous action with probability 0.1 each step.
      actions: ``'minimal'`` (the game's needed actions) or ``'all'`` six.
      seed: seeds the game's random state (sticky actions included).
    """

    def __init__(self, game, *, sticky=True, actions='minimal', seed=0):
        check_game(game)
        if actions not in ACTION_SETS:
            raise ValueError(f'actions must be one of {ACTION_SETS}, got {actions!r}.')
        import minatar

        self._env = minatar.Environment(game, sticky_action_prob=STICKY_PROB if sticky else 0.0)
        self._env.seed(seed)
        self._actions = (
            list(self._env.minimal_action_set()) if actions == 'minimal'
            else list(range(self._env.num_actions())))
        self._done = True
        self.act_space = ActSpace(True, len(self._actions))
        self.action_spec = discrete_action_spec(self.act_space.n)
        self.obs_space = {'image': Space(tuple(self._env.state_shape()), np.uint8)}
        # The runtime's preprocessing of MinAtar's state(), kept in an export's metadata.
        self.observation_spec = {'images': [{'key': 'image', 'path': [], 'size': None,
                                             'binary': True}]}

    def reset(self):
        self._env.reset()
        self._done = False
        return transition(self._observe(), is_first=True)

    def step(self, action):
        ensure_running(self._done)
        reward, terminal = self._env.act(self._actions[discrete_index(action, len(self._actions))])
        self._done = bool(terminal)
        return transition(self._observe(), reward, is_last=terminal, is_terminal=terminal)

    def close(self):
        pass

    def _observe(self):
        return observations.preprocess(self.observation_spec, self._env.state())
