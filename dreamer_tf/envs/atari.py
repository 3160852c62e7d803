"""Atari 2600 games through the Arcade Learning Environment (ale-py), Dreamer style.

The preprocessing follows DreamerV2 (Hafner et al. 2021, danijar/dreamerv2
common/envs.py `Atari`, built on gym's AtariPreprocessing) and DreamerV3
(Hafner et al. 2023, danijar/dreamerv3 embodied/envs/atari.py):
- each action is repeated for `repeat` emulator frames (4) and the
  observation is the pixel-wise maximum of the last two frames, which removes
  the flicker of sprites drawn on alternate frames;
- frames are shrunk to 64x64 by area averaging (V2: OpenCV INTER_AREA; V3
  used Pillow's bilinear filter, a small difference stated in docs/envs.md),
  in greyscale (the ALE's luminance screen) or colour;
- sticky actions (Machado et al. 2018): on every frame the emulator repeats
  the previous action with probability 0.25; both papers use them;
- a random number in [0, noops] of no-op frames at reset (V2: 30, V3 Atari: 0,
  V3 Atari100k: 30);
- the full 18-action set (V2, V3 Atari) or the game's minimal set (V3
  Atari100k);
- rewards are returned unclipped: each agent applies its own transform;
- losing a life is ignored by default (both papers); optionally it marks the
  step terminal while the episode goes on (V3's `lives: discount`), or ends the
  episode (V3's `lives: reset`).
The 27,000-step (108,000-frame) time limit is applied by `make_env`.
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
from dreamer_tf.envs.image import area_resize

LIVES = ('unused', 'terminal', 'reset')
ACTION_SETS = ('all', 'minimal')
# Sticky-action probability of Machado et al. (2018), used by DreamerV2 and V3.
STICKY_PROB = 0.25
NOOP = 0


def game_ids():
    """The game names ale-py ships ROMs for, e.g. 'pong', 'space_invaders'."""
    from ale_py import roms

    return sorted(roms.get_all_rom_ids())


def check_game(game):
    """Raises TaskError naming close and all valid games if `game` is unknown."""
    games = game_ids()
    if game in games:
        return
    close = difflib.get_close_matches(game, games, n=3, cutoff=0.6)
    hint = f'Did you mean {", ".join(close)}? ' if close else ''
    raise TaskError(
        f'Unknown Atari game {game!r}. {hint}Valid games (task atari_<game>): '
        f'{", ".join(games)}.')


class Atari:
    """One Atari game with Dreamer's preprocessing; observation key ``image``.

    Args:
      game: ALE ROM id, e.g. ``'pong'`` or ``'ms_pacman'``.
      repeat: emulator frames per ``step``; rewards are summed.
      size: (height, width) of the observation.
      gray: greyscale (H, W, 1) instead of colour (H, W, 3) images.
      noops: the most no-op frames taken at reset (uniform in [0, noops]).
      sticky: repeat the previous action with probability 0.25 each frame.
      actions: ``'all'`` 18 actions or the game's ``'minimal'`` set.
      lives: ``'unused'``, ``'terminal'`` (a lost life sets ``is_terminal``;
        the episode continues) or ``'reset'`` (a lost life ends the episode).
      seed: seeds the emulator and the no-op count.
    """

    def __init__(self, game, *, repeat=4, size=(64, 64), gray=True, noops=30, sticky=True,
                 actions='all', lives='unused', seed=0):
        import ale_py
        from ale_py import roms

        check_game(game)
        if repeat < 1:
            raise ValueError(f'Action repeat must be >= 1, got {repeat}.')
        if noops < 0:
            raise ValueError(f'noops must be >= 0, got {noops}.')
        if actions not in ACTION_SETS:
            raise ValueError(f'actions must be one of {ACTION_SETS}, got {actions!r}.')
        if lives not in LIVES:
            raise ValueError(f'lives must be one of {LIVES}, got {lives!r}.')
        self._repeat, self._size, self._gray = repeat, tuple(size), gray
        self._noops, self._lives = noops, lives
        self._rng = np.random.default_rng(seed)
        # Set on the class before construction, so that the start-up banner is not printed.
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self._ale = ale_py.ALEInterface()
        # Settings take effect only when set before the ROM is loaded.
        self._ale.setInt('random_seed', int(self._rng.integers(2**31)))
        self._ale.setFloat('repeat_action_probability', STICKY_PROB if sticky else 0.0)
        self._ale.loadROM(roms.get_rom_path(game))
        self._actions = list(
            self._ale.getLegalActionSet() if actions == 'all'
            else self._ale.getMinimalActionSet())
        height, width = self._ale.getScreenDims()
        channels = 1 if gray else 3
        # The last two frames of a step, pooled with a maximum.
        self._frames = np.zeros((2, height, width, channels), np.uint8)
        self._last_lives = 0
        self._done = True
        self.act_space = ActSpace(True, len(self._actions))
        self.action_spec = discrete_action_spec(self.act_space.n)
        self.obs_space = {'image': Space((*self._size, channels), np.uint8)}

    def reset(self):
        self._ale.reset_game()
        for _ in range(self._rng.integers(self._noops + 1)):
            self._ale.act(NOOP)
            if self._ale.game_over():
                self._ale.reset_game()
        # Both pooling slots hold the first frame, so the first image is that frame.
        self._grab(0)
        self._frames[1] = self._frames[0]
        self._last_lives = self._ale.lives()
        self._done = False
        return transition(self._observe(), is_first=True)

    def step(self, action):
        ensure_running(self._done)
        action = self._actions[discrete_index(action, len(self._actions))]
        reward, terminal, last = 0.0, False, False
        for frame in range(self._repeat):
            reward += self._ale.act(action)
            # Every frame is grabbed (a 0.1 MB copy), so that a step cut short
            # by a game over still pools its last frame with the one before.
            self._grab(frame % 2)
            lives = self._ale.lives()
            lost = self._lives != 'unused' and lives < self._last_lives
            self._last_lives = lives
            terminal = self._ale.game_over() or lost
            last = self._ale.game_over() or (lost and self._lives == 'reset')
            if terminal:
                # As DreamerV3, a lost life also ends the action repeat.
                break
        self._done = last
        return transition(self._observe(), reward, is_last=last, is_terminal=terminal)

    def close(self):
        self._ale = None

    def _grab(self, slot):
        if self._gray:
            self._ale.getScreenGrayscale(self._frames[slot, :, :, 0])
        else:
            self._ale.getScreenRGB(self._frames[slot])

    def _observe(self):
        return {'image': area_resize(self._frames.max(0), self._size)}
