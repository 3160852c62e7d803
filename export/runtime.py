"""Run an exported policy with numpy + onnxruntime only (no TensorFlow).

    policy = Policy('export/policy.onnx')      # reads export/policy.onnx.json too
    policy.reset()                             # one env; reset(batch_size=N) for N envs
    obs = env.reset()
    while not done:
        action = policy.act(obs)               # in the env's own action space
        ...

`act` returns the env's own actions: a discrete index (offset by the space's
`start`) or a continuous vector mapped from [-1, 1] onto the env's bounds.
`step` returns the policy's own action instead (one-hot, or a vector in
[-1, 1]), which is what the dreamer_tf env adapters take.

The recurrent state lives in the `Policy`. An observation's `is_first` flag
marks an episode start (the model then restarts from its initial state, as the
agent does; the runtime also sets that state itself, so a restart is exact
whatever the state held); without the key, the first step after `reset()`
counts as the start. A NaN or infinite observation raises ObservationError
(`nonfinite='allow'` passes it on), and an action that is not finite raises
NonFiniteActionError rather than reaching the env.
"""

from pathlib import Path

import numpy as np
import onnxruntime

from export import metadata


class ObservationError(ValueError):
    """An observation whose keys, shapes or dtypes do not match the exported policy."""


class NonFiniteActionError(FloatingPointError):
    """The policy computed an action that is NaN or infinite."""


class Policy:
    """An exported ONNX policy step with its recurrent state.

    Args:
      path: the `.onnx` file; its metadata is `<path>.json`.
      seed: seed of the noise of a stochastic export (ignored when deterministic).
      threads: ONNX Runtime intra-op threads (None: its default, one per core).
      nonfinite: 'raise' (an observation with NaN or infinite values raises
        ObservationError) or 'allow' (it is passed to the model).
    """

    def __init__(self, path, seed=None, threads=None, nonfinite='raise'):
        if nonfinite not in ('raise', 'allow'):
            raise ValueError(f"nonfinite must be 'raise' or 'allow', got {nonfinite!r}")
        self.nonfinite = nonfinite
        path = Path(path)
        self.meta = metadata.read(path)
        if self.meta['format'] != 'onnx':
            raise metadata.MetadataError(
                f'{path} is a {self.meta["format"]} export; this runtime runs ONNX models'
            )
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=['CPUExecutionProvider']
        )
        names = [i.name for i in self.session.get_inputs()]
        if names != self.meta['inputs']:
            raise metadata.MetadataError(
                f'{path} has inputs {names} but its metadata lists {self.meta["inputs"]}'
            )
        self.observations = {
            k: (tuple(v['shape']), np.dtype(v['dtype']))
            for k, v in self.meta['observations'].items()
        }
        self.action_space = self.meta['action_space']
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, batch_size=None):
        """Starts new episodes. batch_size None: single observations, single actions."""
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise ValueError(f'batch_size must be None or a positive int, got {batch_size!r}')
        self.batch_size = batch_size
        self.state = metadata.initial_state(self.meta, batch_size or 1)
        self._started = np.zeros(batch_size or 1, bool)

    def step(self, obs):
        """Policy action for `obs` (one-hot, or a vector in [-1, 1]); advances the state."""
        rows = self.batch_size or 1
        inputs = {k: self._observation(obs, k) for k in self.observations}
        if 'is_first' in obs:
            is_first = np.asarray(obs['is_first'])
            shape = (rows,) if self.batch_size else ()
            if is_first.shape != shape or is_first.dtype != bool:
                raise ObservationError(
                    f"observation 'is_first': expected bool of shape {shape}, "
                    f'got {is_first.dtype} of shape {is_first.shape}'
                )
            is_first = is_first.reshape(rows)
        else:
            is_first = ~self._started
        inputs['is_first'] = is_first
        inputs.update(self._restarted(is_first))
        for key, spec in self.meta['noise'].items():
            inputs[key] = self._noise((rows, *spec['shape']), spec['dist'])
        action, deter, stoch = self.session.run(list(metadata.STEP_OUTPUTS), inputs)
        if not np.isfinite(action).all():
            raise NonFiniteActionError(
                'the policy computed a non-finite action; check the observations since the '
                "episode start (Policy(..., nonfinite='allow') lets NaN or inf in)")
        self.state = {'deter': deter, 'stoch': stoch, 'prev_action': action}
        self._started[:] = True
        return action if self.batch_size else action[0]

    def _restarted(self, is_first):
        """The state with the rows of `is_first` set to the initial state."""
        if not is_first.any():
            return self.state
        initial = metadata.initial_state(self.meta, len(is_first))
        return {k: np.where(is_first[:, None], initial[k], v) for k, v in self.state.items()}

    def act(self, obs):
        """Action for `obs` in the env's own action space; advances the state."""
        return env_action(self.action_space, self.step(obs))

    def _observation(self, obs, key):
        shape, dtype = self.observations[key]
        if key not in obs:
            raise ObservationError(
                f'observation {key!r} is missing; the policy needs {sorted(self.observations)}'
            )
        value = np.asarray(obs[key])
        expected = (self.batch_size, *shape) if self.batch_size else shape
        if value.shape != expected or value.dtype != dtype:
            raise ObservationError(
                f'observation {key!r}: expected {dtype.name} of shape {expected}, '
                f'got {value.dtype.name} of shape {value.shape}'
            )
        if self.nonfinite == 'raise' and dtype.kind == 'f' and not np.isfinite(value).all():
            raise ObservationError(
                f"observation {key!r} holds NaN or infinite values (Policy(..., nonfinite='allow') "
                'passes them to the model)')
        return value if self.batch_size else value[None]

    def _noise(self, shape, dist):
        if dist == 'normal':
            return self.rng.standard_normal(shape, np.float32)
        # Uniform in [1e-20, 1) as the agent draws it: Gumbel-max takes log(-log u),
        # finite only away from 0 and 1 (float32 draws are below 1; 0 is lifted).
        return np.maximum(self.rng.random(shape, np.float32), np.float32(1e-20))


def env_action(space, action):
    """Policy action(s) -> the env's own: start + arg-max index, or [-1, 1] mapped onto [low, high].

    `space` is the metadata's `action_space`. The affine map is the env adapters'
    own (dreamer_tf.envs.base.scale_action), so `act` drives a raw env as the
    adapter would.
    """
    action = np.asarray(action, np.float32)
    if space['discrete']:
        index = np.argmax(action, -1) + space['start']
        return int(index) if index.ndim == 0 else index.astype(np.int64)
    low = np.asarray(space['low'], np.float64)
    high = np.asarray(space['high'], np.float64)
    scaled = low + (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 * (high - low)
    return scaled.astype(space['dtype']).reshape(*action.shape[:-1], *space['shape'])


def run_episodes(policy, env, episodes):
    """Returns of `episodes` episodes of `policy` (a Policy) on a dreamer_tf env.

    The env adapters take the policy's own actions (one-hot or [-1, 1]) and map
    them to the env's bounds themselves, so `step`, not `act`, feeds them.
    """
    returns = []
    for _ in range(episodes):
        obs, total = env.reset(), 0.0
        policy.reset()
        while not obs['is_last']:
            obs = env.step(policy.step(obs))
            total += float(obs['reward'])
        returns.append(total)
    return returns
