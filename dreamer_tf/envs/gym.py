"""Adapter from gymnasium environments to the project's env interface."""

import gymnasium
import numpy as np
from gymnasium import spaces

from dreamer_tf.envs.base import (
    ActSpace, Space, TaskError, check_bounds, discrete_index, ensure_running,
    scale_action, transition)
from dreamer_tf.envs.image import resize

RESERVED_KEYS = ('vector', 'reward', 'is_first', 'is_last', 'is_terminal')


def check_id(env_id):
    """Raises TaskError, with gymnasium's hint, unless `env_id` is registered."""
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.UnregisteredEnv as error:
        raise TaskError(f'Unknown gymnasium env id {env_id!r}: {error}') from None


def make_gym(env_id, render_mode=None):
    """Calls ``gymnasium.make`` on a registered id (`check_id`). `render_mode` is passed
    only when set: many envs' constructors take no such argument."""
    check_id(env_id)
    kwargs = {'render_mode': render_mode} if render_mode else {}
    return gymnasium.make(env_id, **kwargs)


def is_image(box):
    """Whether a Box observation is an HxWxC uint8 image."""
    return box.dtype == np.uint8 and len(box.shape) == 3


def observation_parts(space):
    """Returns ``{key: Box}`` for an observation space; key None for a bare Box."""
    if isinstance(space, spaces.Box):
        return {None: space}
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            if not isinstance(sub, spaces.Box):
                raise TypeError(
                    f'Observation space {sub} under key {key!r} is not '
                    f'supported: Dict observations must contain only Boxes.')
        return dict(space.spaces)
    raise TypeError(
        f'Observation space {space} is not supported: only Box and Dict of '
        f'Box observations are.')


def action_converter(space):
    """Returns the ActSpace and a function mapping interface actions to env actions."""
    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)
        return ActSpace(True, n), lambda action: start + discrete_index(action, n)
    if isinstance(space, spaces.Box):
        low, high = check_bounds(space.low, space.high)
        return ActSpace(False, int(low.size)), (
            lambda action: scale_action(action, low, high).astype(space.dtype))
    raise TypeError(
        f'Action space {space} is not supported: only Discrete and Box '
        f'actions are.')


class Gym:
    """Wraps a gymnasium env (or id) into the project's env interface.

    Args:
      env: a gymnasium id such as ``'CartPole-v1'`` or a ``gymnasium.Env``.
      seed: seed passed to the first ``reset``; later resets continue its RNG.
      size: optional (height, width) that image observations are resized to.
      pixels: use ``env.render()`` frames as the only observation, ``image``.
        Requires ``size`` and, for env instances, ``render_mode='rgb_array'``.
    """

    def __init__(self, env, *, seed=None, size=None, pixels=False):
        if isinstance(env, str):
            env = make_gym(env, render_mode='rgb_array' if pixels else None)
        self._env = env
        self._seed = seed
        self._size = tuple(size) if size else None
        self._pixels = pixels
        self._done = True
        self.act_space, self._convert_action = action_converter(env.action_space)
        if pixels:
            if self._size is None:
                raise ValueError('pixels=True needs an image size.')
            if env.render_mode != 'rgb_array':
                raise ValueError(
                    f"pixels=True needs render_mode='rgb_array', got "
                    f'{env.render_mode!r}.')
            self.obs_space = {'image': Space((*self._size, 3), np.uint8)}
            return
        parts = observation_parts(env.observation_space)
        self._keyed = isinstance(env.observation_space, spaces.Dict)
        self._image_keys = {
            key: 'image' if key is None else key
            for key, box in parts.items() if is_image(box)}
        self._vector_keys = sorted(
            key for key, box in parts.items() if not is_image(box))
        self.obs_space = {}
        for key, name in self._image_keys.items():
            if name in RESERVED_KEYS:
                raise ValueError(f'Image observation key {name!r} is reserved.')
            shape = parts[key].shape
            self.obs_space[name] = Space(
                (*(self._size or shape[:2]), shape[2]), np.uint8)
        if self._vector_keys:
            length = sum(int(np.prod(parts[key].shape)) for key in self._vector_keys)
            self.obs_space['vector'] = Space((length,), np.float32)

    def reset(self):
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None
        self._done = False
        return transition(self._observe(obs), is_first=True)

    def step(self, action):
        ensure_running(self._done)
        obs, reward, terminated, truncated, _ = self._env.step(
            self._convert_action(action))
        self._done = terminated or truncated
        return transition(
            self._observe(obs), reward,
            is_last=self._done, is_terminal=terminated)

    def close(self):
        self._env.close()

    def _observe(self, obs):
        if self._pixels:
            return {'image': self._image(self._env.render())}
        parts = obs if self._keyed else {None: obs}
        out = {name: self._image(parts[key]) for key, name in self._image_keys.items()}
        if self._vector_keys:
            out['vector'] = np.concatenate([
                np.asarray(parts[key], np.float32).reshape(-1)
                for key in self._vector_keys])
        return out

    def _image(self, image):
        image = np.asarray(image, np.uint8)
        return resize(image, self._size) if self._size else image
