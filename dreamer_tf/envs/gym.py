"""Adapter from gymnasium environments to the project's env interface."""

import importlib
import inspect
import os
import sys

import gymnasium
import numpy as np
from gymnasium import spaces

from dreamer_tf.envs.base import (
    ActSpace,
    Space,
    TaskError,
    box_action_spec,
    check_bounds,
    discrete_action_spec,
    discrete_index,
    ensure_running,
    scale_action,
    transition,
)
from dreamer_tf_runtime import observations

RESERVED_KEYS = ('vector', 'reward', 'is_first', 'is_last', 'is_terminal')
LEAVES = (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)


def import_user_module(name, what):
    """Imports module `name` (named by `what`, for the message), searching the working
    directory too, as `python -m` does: a user's env file beside the command imports."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)  # last: a user's file must not shadow an installed module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is None or not (name == error.name or name.startswith(error.name + '.')):
            raise  # a module missing inside the user's module: its own traceback says where
        raise TaskError(
            f'cannot import module {name!r} ({what}): no such module in the working directory '
            f'{cwd} or the installed packages') from None


def _registered(env_id):
    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error:
        return False
    return True


def _entry_module(spec):
    entry = spec.entry_point
    return entry.partition(':')[0] if isinstance(entry, str) else getattr(entry, '__module__', '')


def resolve(env_id):
    """A callable building the gymnasium env `env_id` with keyword arguments for
    gymnasium.make (`render_mode`), or TaskError. `env_id` is a registered id
    (`CartPole-v1`), gymnasium's `module:EnvId` (the module is imported first, as
    `gymnasium.make` does, and may register the id), or `module:attr` with `attr` a
    callable of the module that returns an env (a class or a factory)."""
    module, sep, attr = env_id.rpartition(':')
    if not sep:
        try:
            gymnasium.spec(env_id)
        except gymnasium.error.Error as error:
            raise TaskError(f'Unknown gymnasium env id {env_id!r}: {error}') from None
        return lambda **kwargs: gymnasium.make(env_id, **kwargs)
    if module == '__main__' or '<' in attr:
        raise TaskError(
            f'task gym_{env_id} names an env_fn of the Python API that cannot be imported by '
            'name (defined in a notebook, a script or a function): pass it again, '
            'dreamer_tf.train(..., env_fn=...) to resume, dreamer_tf.load(logdir, env_fn=...) '
            'to evaluate')
    loaded = import_user_module(module, f'task gym_{env_id}')
    if _registered(attr):
        return lambda **kwargs: gymnasium.make(attr, **kwargs)
    factory = getattr(loaded, attr, None)
    if callable(factory):
        return factory
    registered = [i for i, spec in gymnasium.registry.items()
                  if _entry_module(spec) == module or _entry_module(spec).startswith(module + '.')]
    found = f'it registers {", ".join(registered)}' if registered else 'it registers no env'
    raise TaskError(f'module {module!r} registers no gymnasium env {attr!r} and has no callable '
                    f'{attr!r} ({found}); name a registered id or a class or function of it')


def check_id(env_id):
    """Raises TaskError unless `resolve` can build `env_id`; builds nothing."""
    resolve(env_id)


def build(factory, seed=None, render_mode=None, name='env factory'):
    """Calls an env factory (a gymnasium id's maker, an Env class or a function), passing
    `seed` and `render_mode` where it takes them; checks that it returned an env."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes = lambda key: key in params or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {}
    if seed is not None and 'seed' in params:
        kwargs['seed'] = seed
    if render_mode:
        if not takes('render_mode'):
            raise TaskError(f'{name} takes no render_mode: it cannot render the images that '
                            "env.obs 'vision' needs")
        kwargs['render_mode'] = render_mode
    env = factory(**kwargs)
    if not all(hasattr(env, k) for k in ('reset', 'step', 'observation_space', 'action_space')):
        raise TaskError(f'{name} returned {type(env).__name__}, not a gymnasium env (reset, '
                        'step, observation_space, action_space)')
    return env


def make_gym(env_id, render_mode=None, seed=None):
    """Builds the gymnasium env `env_id` (see `resolve`). `render_mode` is passed only
    when set: many envs' constructors take no such argument."""
    return build(resolve(env_id), seed, render_mode, f'gym_{env_id}')


def is_image(box):
    """Whether a Box observation is an HxWxC uint8 image."""
    return isinstance(box, spaces.Box) and box.dtype == np.uint8 and len(box.shape) == 3


def observation_parts(space, path=()):
    """``{name: (path, leaf space)}`` of an observation space: nested Dict and Tuple
    spaces are flattened, `path` holding the keys and indices down to a leaf and `name`
    joining them with '_' ('' for a bare space). Leaves are Box, Discrete, MultiBinary
    and MultiDiscrete; anything else is a TaskError naming the space and its key."""
    name = '_'.join(str(p) for p in path)
    if isinstance(space, spaces.Dict):
        items = space.spaces.items()
    elif isinstance(space, spaces.Tuple):
        items = enumerate(space.spaces)
    elif isinstance(space, LEAVES):
        return {name: (path, space)}
    else:
        where = f' under key {name!r}' if path else ''
        raise TaskError(
            f'Observation space {space}{where} is not supported: observations must be Box, '
            'Discrete, MultiBinary or MultiDiscrete spaces, or Dict and Tuple spaces of them.')
    parts = {}
    for key, sub in items:
        for leaf, value in observation_parts(sub, (*path, key)).items():
            if leaf in parts:
                raise TaskError(f'Observation keys {parts[leaf][0]} and {value[0]} both flatten '
                                f'to {leaf!r}; rename one of them')
            parts[leaf] = value
    return parts


def leaf_spec(path, space):
    """A vector leaf as dreamer_tf_runtime.observations describes it (JSON data)."""
    spec = {'path': list(path)}
    if isinstance(space, spaces.Discrete):
        return {**spec, 'kind': 'discrete', 'n': int(space.n), 'start': int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {**spec, 'kind': 'multi_discrete', 'nvec': space.nvec.tolist(),
                'start': np.asarray(space.start).tolist()}
    kind = 'multi_binary' if isinstance(space, spaces.MultiBinary) else 'box'
    return {**spec, 'kind': kind, 'shape': [int(d) for d in space.shape]}


def leaf_size(spec):
    if spec['kind'] == 'discrete':
        return spec['n']
    if spec['kind'] == 'multi_discrete':
        return int(np.sum(spec['nvec']))
    return int(np.prod(spec['shape']))


def action_converter(space):
    """Returns the ActSpace, the env's action spec and a function mapping interface
    actions to env actions."""
    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)
        return (ActSpace(True, n), discrete_action_spec(n, start),
                lambda action: start + discrete_index(action, n))
    if isinstance(space, spaces.Box):
        low, high = check_bounds(space.low, space.high)
        return ActSpace(False, int(low.size)), box_action_spec(low, high, space.dtype), (
            lambda action: scale_action(action, low, high).astype(space.dtype))
    raise TaskError(
        f'Action space {space} is not supported: actions must be Discrete or Box. A '
        'MultiDiscrete or Tuple of Discrete actions can be wrapped into one Discrete over '
        'their combinations (gymnasium.ActionWrapper).')


class Gym:
    """Wraps a gymnasium env (or id) into the project's env interface.

    Image observations (HxWxC uint8 Boxes) keep their key ('image' for a bare
    one); every other leaf of the (nested) observation space is flattened into
    one float32 ``vector``, in the order of the leaves' names (Discrete and
    MultiDiscrete one-hot; see `observation_parts`).

    Args:
      env: a gymnasium id such as ``'CartPole-v1'`` (or ``'module:EnvId'``,
        ``'module:factory'``, see `resolve`) or a ``gymnasium.Env``.
      seed: seed passed to the first ``reset``; later resets continue its RNG.
      size: optional (height, width) that image observations are resized to.
      pixels: use ``env.render()`` frames as the only observation, ``image``.
        Requires ``size`` and, for env instances, ``render_mode='rgb_array'``.
    """

    def __init__(self, env, *, seed=None, size=None, pixels=False):
        if isinstance(env, str):
            env = make_gym(env, render_mode='rgb_array' if pixels else None, seed=seed)
        self._env = env
        self._seed = seed
        self._size = tuple(size) if size else None
        self._pixels = pixels
        self._done = True
        self.act_space, self.action_spec, self._convert_action = action_converter(
            env.action_space)
        if pixels:
            if self._size is None:
                raise ValueError('pixels=True needs an image size.')
            if env.render_mode != 'rgb_array':
                raise ValueError(
                    f"pixels=True needs render_mode='rgb_array', got "
                    f'{env.render_mode!r}.')
            self.obs_space = {'image': Space((*self._size, 3), np.uint8)}
            # The env's observation is then its rendered frame.
            self.observation_spec = {
                'images': [{'key': 'image', 'path': [], 'size': list(self._size)}]}
            return
        parts = observation_parts(env.observation_space)
        images = {name or 'image': (path, leaf)
                  for name, (path, leaf) in parts.items() if is_image(leaf)}
        size = list(self._size) if self._size else None
        vector = [leaf_spec(*parts[name]) for name in sorted(parts)
                  if not is_image(parts[name][1])]
        self.observation_spec = {
            'images': [{'key': key, 'path': list(path), 'size': size}
                       for key, (path, _) in images.items()],
            'vector': vector}
        self.obs_space = {}
        for key, (_, leaf) in images.items():
            if key in RESERVED_KEYS:
                raise TaskError(f'Image observation key {key!r} is reserved; rename it.')
            self.obs_space[key] = Space((*(self._size or leaf.shape[:2]), leaf.shape[2]), np.uint8)
        if vector:
            self.obs_space['vector'] = Space((sum(leaf_size(v) for v in vector),), np.float32)

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
        # The runtime's own preprocessing: an exported policy reads the env's
        # observations through the same function (observation_spec is in its metadata).
        return observations.preprocess(
            self.observation_spec, self._env.render() if self._pixels else obs)
