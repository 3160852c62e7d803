"""Environment interface shared by all suites, plus generic wrappers.

Every environment exposes ``obs_space``, ``act_space``, ``action_spec``, ``reset()``,
``step(action)`` and ``close()``. ``reset`` and ``step`` return a dict holding
the observation keys plus ``reward``, ``is_first``, ``is_last`` and
``is_terminal``.
"""

from dataclasses import dataclass

import numpy as np


class TaskError(ValueError):
    """A task name that no suite provides; the message names valid ones."""


@dataclass(frozen=True)
class Space:
    """Shape and dtype of one observation key."""

    shape: tuple
    dtype: np.dtype

    def __post_init__(self):
        # Normalise so that e.g. Space([5], 'float32') == Space((5,), np.float32).
        object.__setattr__(self, 'shape', tuple(int(d) for d in self.shape))
        object.__setattr__(self, 'dtype', np.dtype(self.dtype))


@dataclass(frozen=True)
class ActSpace:
    """Action space: ``n`` discrete choices, or an ``n``-dim vector in [-1, 1]."""

    discrete: bool
    n: int


def transition(obs, reward=0.0, is_first=False, is_last=False, is_terminal=False):
    """Builds the dict returned by ``reset`` and ``step``."""
    return {
        **obs,
        'reward': np.float32(reward),
        'is_first': bool(is_first),
        'is_last': bool(is_last),
        'is_terminal': bool(is_terminal),
    }


def ensure_running(done):
    """Raises if an episode is over (or never started) and ``step`` is called."""
    if done:
        raise RuntimeError(
            'step() called after is_last or before the first reset(); '
            'call reset() to start a new episode.')


def discrete_index(action, n):
    """Returns the action index from an int or a one-hot vector of length n."""
    action = np.asarray(action)
    if action.ndim == 0:
        index = int(action)
    elif action.shape == (n,):
        index = int(np.argmax(action))
    else:
        raise ValueError(
            f'Discrete action must be an index or a one-hot vector of length '
            f'{n}, got shape {action.shape}.')
    if not 0 <= index < n:
        raise ValueError(f'Discrete action {index} is outside [0, {n}).')
    return index


def discrete_action_spec(n, start=0):
    """An env's own discrete actions, as an exported policy's runtime maps into them
    (dreamer_tf_runtime): the agent's action i is the env's `start + i`."""
    return {'discrete': True, 'n': int(n), 'start': int(start)}


def box_action_spec(low, high, dtype=np.float32):
    """An env's own continuous actions: the agent's [-1, 1] vector maps linearly onto
    [low, high] (`scale_action`), reshaped to `shape` and cast to `dtype`."""
    return {
        'discrete': False,
        'n': int(np.size(low)),
        'shape': [int(d) for d in np.shape(low)],
        'low': [float(x) for x in np.ravel(low)],
        'high': [float(x) for x in np.ravel(high)],
        'dtype': np.dtype(dtype).name,
    }


def check_bounds(low, high):
    """Validates continuous action bounds and returns them as float64 arrays."""
    low = np.asarray(low, np.float64)
    high = np.asarray(high, np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f'Continuous actions need finite bounds, got low={low}, high={high}.')
    return low, high


def scale_action(action, low, high):
    """Clips a vector to [-1, 1] and maps it linearly onto [low, high]."""
    action = np.asarray(action, np.float64)
    if action.size != low.size:
        raise ValueError(
            f'Continuous action must have {low.size} elements, got shape '
            f'{action.shape}.')
    action = np.clip(action.reshape(low.shape), -1.0, 1.0)
    return low + (action + 1.0) / 2.0 * (high - low)


class Wrapper:
    """Forwards everything to the wrapped env; subclasses override parts."""

    def __init__(self, env):
        self.env = env

    @property
    def obs_space(self):
        return self.env.obs_space

    @property
    def act_space(self):
        return self.env.act_space

    @property
    def action_spec(self):
        """The env's own action space (`discrete_action_spec`, `box_action_spec`)."""
        return self.env.action_spec

    @property
    def observation_spec(self):
        """How the env's own observations become the policy's inputs
        (dreamer_tf_runtime.observations), or None where that is not recorded."""
        return getattr(self.env, 'observation_spec', None)

    def reset(self):
        return self.env.reset()

    def step(self, action):
        return self.env.step(action)

    def close(self):
        self.env.close()


class ActionRepeat(Wrapper):
    """Repeats each action ``repeat`` times, summing rewards.

    Stops early when the wrapped env reports ``is_last``.
    """

    def __init__(self, env, repeat):
        if repeat < 1:
            raise ValueError(f'Action repeat must be >= 1, got {repeat}.')
        super().__init__(env)
        self._repeat = repeat

    def step(self, action):
        reward = 0.0
        for _ in range(self._repeat):
            out = self.env.step(action)
            reward += float(out['reward'])
            if out['is_last']:
                break
        return {**out, 'reward': np.float32(reward)}


class TimeLimit(Wrapper):
    """Ends episodes after ``steps`` calls to ``step`` of the wrapped env.

    Reaching the limit sets ``is_last`` but not ``is_terminal``, since the
    episode was cut short rather than ended by the task.
    """

    def __init__(self, env, steps):
        if steps < 1:
            raise ValueError(f'Time limit must be >= 1 step, got {steps}.')
        super().__init__(env)
        self._steps = steps
        self._count = 0
        self._done = True

    def reset(self):
        self._count = 0
        self._done = False
        return self.env.reset()

    def step(self, action):
        ensure_running(self._done)
        out = self.env.step(action)
        self._count += 1
        if self._count >= self._steps and not out['is_last']:
            out = {**out, 'is_last': True}
        self._done = out['is_last']
        return out


class FlattenImage(Wrapper):
    """Turns the uint8 ``image`` into a float32 ``vector`` in [0, 1].

    For observations the CNN encoder/decoder cannot take, such as MinAtar's
    10x10 grids (the decoders need 64x64 or a multiple of 16): the MLP
    encoder reads the flat vector instead.
    """

    def __init__(self, env):
        super().__init__(env)
        spaces = dict(env.obs_space)
        image = spaces.pop('image', None)
        if image is None or len(image.shape) != 3:
            raise ValueError(f'flatten needs an (H, W, C) image observation, got {env.obs_space}.')
        if 'vector' in spaces:
            raise ValueError('flatten cannot be used with an env that already has a vector.')
        spaces['vector'] = Space((int(np.prod(image.shape)),), np.float32)
        self._spaces = spaces

    @property
    def obs_space(self):
        return self._spaces

    @property
    def observation_spec(self):
        return None  # flattening is not a step of the runtime's preprocessing

    def reset(self):
        return self._flatten(self.env.reset())

    def step(self, action):
        return self._flatten(self.env.step(action))

    @staticmethod
    def _flatten(out):
        out = dict(out)
        out['vector'] = out.pop('image').reshape(-1).astype(np.float32) / 255.0
        return out
