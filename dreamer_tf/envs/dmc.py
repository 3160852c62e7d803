"""Adapter from DeepMind Control Suite tasks to the project's env interface."""

import difflib
import os

# MuJoCo picks its OpenGL backend when first imported; EGL renders headless.
os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np  # noqa: E402
from dm_control import suite  # noqa: E402

from dreamer_tf.envs.base import (  # noqa: E402
    ActSpace,
    Space,
    TaskError,
    box_action_spec,
    check_bounds,
    ensure_running,
    scale_action,
    transition,
)
from dreamer_tf_runtime import observations  # noqa: E402

OBS_MODES = ('proprio', 'vision')


def parse_task(name):
    """Splits e.g. ``'ball_in_cup_catch'`` into ``('ball_in_cup', 'catch')``.

    Domains may contain underscores, so the longest matching domain wins.
    """
    for domain in sorted(suite.TASKS_BY_DOMAIN, key=len, reverse=True):
        if name.startswith(domain + '_'):
            task = name[len(domain) + 1:]
            if task in suite.TASKS_BY_DOMAIN[domain]:
                return domain, task
    valid = [f'{domain}_{task}' for domain, task in suite.ALL_TASKS]
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.6)
    hint = (f'Did you mean: {", ".join(close)}?' if close else
            f'Known domains: {", ".join(sorted(suite.TASKS_BY_DOMAIN))}.')
    raise TaskError(f'Unknown dm_control task {name!r}. {hint}')


class DMC:
    """A dm_control suite task with [-1, 1] actions.

    Args:
      domain, task: suite names, e.g. ``'cartpole'``, ``'balance'``.
      obs: ``'proprio'`` for a flat float32 ``vector`` of all observations (in
        sorted key order) or ``'vision'`` for a uint8 ``image`` render.
      size: (height, width) of rendered images.
      camera: camera id to render; defaults to 2 for quadruped, else 0.
      seed: seed of the task's random state.
      repeat: physics steps per ``step`` call (action repeat), rewards summed.
        Done here rather than by the generic ``ActionRepeat`` wrapper so that
        only the last frame is rendered (rendering dominates a vision step).
    """

    def __init__(self, domain, task, obs='proprio', size=(64, 64), camera=None,
                 seed=0, repeat=1):
        if repeat < 1:
            raise ValueError(f'Action repeat must be >= 1, got {repeat}.')
        self._repeat = repeat
        if obs not in OBS_MODES:
            raise ValueError(f'obs must be one of {OBS_MODES}, got {obs!r}.')
        self._env = suite.load(domain, task, task_kwargs={'random': seed})
        self._vision = obs == 'vision'
        self._size = tuple(size)
        self._camera = camera if camera is not None else (
            2 if domain == 'quadruped' else 0)
        self._done = True
        spec = self._env.action_spec()
        self._low, self._high = check_bounds(
            np.broadcast_to(spec.minimum, spec.shape),
            np.broadcast_to(spec.maximum, spec.shape))
        self.act_space = ActSpace(False, int(np.prod(spec.shape)))
        self.action_spec = box_action_spec(self._low, self._high, spec.dtype)
        if self._vision:
            self.obs_space = {'image': Space((*self._size, 3), np.uint8)}
            # The env's observation is then the camera frame (physics.render).
            self.observation_spec = {
                'images': [{'key': 'image', 'path': [], 'size': list(self._size)}]}
        else:
            spec = self._env.observation_spec()
            length = sum(int(np.prod(s.shape)) for s in spec.values())
            self.obs_space = {'vector': Space((length,), np.float32)}
            # dm_env's observation dict, its entries flattened in key order (as _observe).
            self.observation_spec = {'vector': [
                {'path': [key], 'kind': 'box', 'shape': [int(d) for d in spec[key].shape]}
                for key in sorted(spec)]}

    def reset(self):
        timestep = self._env.reset()
        self._done = False
        return transition(self._observe(timestep.observation), is_first=True)

    def step(self, action):
        ensure_running(self._done)
        action = scale_action(action, self._low, self._high)
        reward = 0.0
        for _ in range(self._repeat):
            timestep = self._env.step(action)
            reward += timestep.reward or 0.0
            if timestep.last():
                break
        self._done = timestep.last()
        # dm_env signals a real termination with discount 0; time limits keep 1.
        return transition(
            self._observe(timestep.observation), reward,
            is_last=self._done,
            is_terminal=self._done and timestep.discount == 0)

    def save_state(self):
        """The simulator state and step count, for `restore_state` (lookahead probes)."""
        return self._env.physics.get_state().copy(), self._env._step_count, self._done

    def restore_state(self, saved):
        """Puts the task back into a state from `save_state`."""
        state, count, done = saved
        with self._env.physics.reset_context():
            self._env.physics.set_state(state)
        self._env._step_count, self._done = count, done

    def close(self):
        self._env.close()

    def _observe(self, observation):
        # The runtime's own preprocessing, which an exported policy applies to the same
        # observations (observation_spec is in its metadata).
        if self._vision:
            observation = self._env.physics.render(*self._size, camera_id=self._camera)
        return observations.preprocess(self.observation_spec, observation)
