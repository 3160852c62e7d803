"""An exported policy with its recurrent state, run with numpy and ONNX Runtime or LiteRT.

    from dreamer_tf_runtime import Policy

    policy = Policy('exported/policy.onnx')     # or a .tflite file; reads <file>.json too
    obs, info = env.reset()                     # the env's own observation
    policy.reset()                              # a new episode (reset(batch_size=N): N envs)
    while True:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        ...

`act` returns the env's own action: a discrete index (offset by the space's
`start`) or a vector mapped from [-1, 1] onto the env's bounds. `step` returns
the policy's own action instead (one-hot, or a vector in [-1, 1]).

Observations: by default (`observations='env'`) the env's own observation,
turned into the model's inputs by the preprocessing recorded at export
(dreamer_tf_runtime.observations: Dict and Tuple leaves flattened, discrete
values one-hot, images resized). `observations='model'` takes them preprocessed
already, as dreamer_tf's env adapters return them (a dict of the model's keys,
which may hold `is_first`).

The first step after `reset()` starts an episode, as does `step(obs,
is_first=True)`; the state is then set to the initial state, exactly, whatever it
held. A NaN or infinite observation raises ObservationError (`nonfinite='allow'`
passes it on), and an action or a recurrent state that is not finite raises
NonFiniteActionError rather than reaching the env (a discrete action, the one-hot
of an arg max, stays finite when the state behind it is not).
"""

from pathlib import Path

import numpy as np

from dreamer_tf_runtime import backends, metadata, observations
from dreamer_tf_runtime.observations import ObservationError


class NonFiniteActionError(FloatingPointError):
    """The policy computed an action or a recurrent state that is NaN or infinite."""


class Policy:
    """An exported policy step with its recurrent state.

    Args:
      path: the `.onnx` or `.tflite` file; its metadata is `<path>.json`.
      seed: seed of the noise of a stochastic export (ignored when deterministic).
      threads: the engine's threads (None: its default).
      nonfinite: 'raise' (an observation with NaN or infinite values raises
        ObservationError) or 'allow' (it is passed to the model).
      observations: 'env' (the env's own observations) or 'model' (preprocessed).
    """

    def __init__(self, path, seed=None, threads=None, nonfinite='raise', observations='env'):
        if nonfinite not in ('raise', 'allow'):
            raise ValueError(f"nonfinite must be 'raise' or 'allow', got {nonfinite!r}")
        if observations not in ('env', 'model'):
            raise ValueError(f"observations must be 'env' or 'model', got {observations!r}")
        path = Path(path)
        self.meta = metadata.read(path)
        self.preprocess = self.meta.get('preprocess') if observations == 'env' else None
        if observations == 'env' and self.preprocess is None:
            raise metadata.MetadataError(
                f'{path} records no preprocessing of its env\'s observations (task '
                f'{self.meta["task"]}): pass them preprocessed, as dreamer_tf\'s env adapter '
                "returns them, with Policy(..., observations='model')")
        self.nonfinite = nonfinite
        self.engine = backends.load(path, self.meta, threads)
        if sorted(self.engine.input_names) != sorted(self.meta['inputs']):
            raise metadata.MetadataError(
                f'{path} has inputs {self.engine.input_names} but its metadata lists '
                f'{self.meta["inputs"]}')
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

    def step(self, obs, is_first=None):
        """Policy action for `obs` (one-hot, or a vector in [-1, 1]); advances the state.
        With `reset(batch_size=N)`, `obs` holds N observations (env: a sequence)."""
        rows = self.batch_size or 1
        obs = self._model_inputs(obs)
        inputs = {k: self._observation(obs, k) for k in self.observations}
        if is_first is None and 'is_first' in obs:
            is_first = obs['is_first']
        inputs['is_first'] = self._is_first(is_first, rows)
        inputs.update(self._restarted(inputs['is_first']))
        for key, spec in self.meta['noise'].items():
            inputs[key] = self._noise((rows, *spec['shape']), spec['dist'])
        out = self.engine(inputs)
        action = np.asarray(out['action'])
        state = {'deter': np.asarray(out['next_deter']), 'stoch': np.asarray(out['next_stoch'])}
        if not all(np.isfinite(x).all() for x in (action, *state.values())):
            raise NonFiniteActionError(
                'the policy computed a non-finite action or state; check the observations '
                "since the episode start (Policy(..., nonfinite='allow') lets NaN or inf in)")
        self.state = {**state, 'prev_action': action}
        self._started[:] = True
        return action if self.batch_size else action[0]

    def act(self, obs, is_first=None):
        """Action for `obs` in the env's own action space; advances the state."""
        return env_action(self.action_space, self.step(obs, is_first))

    def _model_inputs(self, obs):
        if self.preprocess is None:
            return obs
        if self.batch_size is None:
            return observations.preprocess(self.preprocess, obs)
        rows = [observations.preprocess(self.preprocess, o) for o in obs]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def _is_first(self, is_first, rows):
        if is_first is None:
            return ~self._started
        is_first = np.asarray(is_first)
        shape = (rows,) if self.batch_size else ()
        if is_first.shape != shape or is_first.dtype != bool:
            raise ObservationError(
                f"observation 'is_first': expected bool of shape {shape}, "
                f'got {is_first.dtype} of shape {is_first.shape}')
        return is_first.reshape(rows)

    def _restarted(self, is_first):
        """The state with the rows of `is_first` set to the initial state."""
        if not is_first.any():
            return self.state
        initial = metadata.initial_state(self.meta, len(is_first))
        return {k: np.where(is_first[:, None], initial[k], v) for k, v in self.state.items()}

    def _observation(self, obs, key):
        shape, dtype = self.observations[key]
        if key not in obs:
            raise ObservationError(
                f'observation {key!r} is missing; the policy needs {sorted(self.observations)}')
        value = np.asarray(obs[key])
        expected = (self.batch_size, *shape) if self.batch_size else shape
        if value.shape != expected or value.dtype != dtype:
            raise ObservationError(
                f'observation {key!r}: expected {dtype.name} of shape {expected}, '
                f'got {value.dtype.name} of shape {value.shape}')
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
    """Returns of `episodes` episodes of `policy` (a Policy with `observations='model'`)
    on a dreamer_tf env, which takes the policy's own actions (one-hot or [-1, 1]) and
    maps them to the env's bounds itself, so `step`, not `act`, feeds it."""
    returns = []
    for _ in range(episodes):
        obs, total = env.reset(), 0.0
        policy.reset()
        while not obs['is_last']:
            obs = env.step(policy.step(obs))
            total += float(obs['reward'])
        returns.append(total)
    return returns
