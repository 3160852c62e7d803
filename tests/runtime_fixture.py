"""The runtime distribution on its own, as a device without TensorFlow runs it (CI):

    python tests/runtime_fixture.py write DIR    # dreamer_tf + TensorFlow: export, record
    DIR/venv/bin/python tests/runtime_fixture.py check DIR   # dreamer_tf_runtime only

`write` exports a tiny DreamerV3 policy of tests/dict_env.py (ONNX and TFLite) and
records 50 steps of the env's own nested observations with the TensorFlow policy's
actions and states. `check` asserts that TensorFlow cannot be imported, then runs
both models with dreamer_tf_runtime from those raw observations, carrying state,
and compares: discrete actions identical, states within 1e-4.
"""

import sys
from pathlib import Path

import numpy as np

STEPS = 50
MODELS = ('policy.onnx', 'policy.tflite')


def flatten(obs, prefix='obs'):
    """Nested observation dict -> {'obs/a/b': array} (npz keys), and back with `nest`."""
    out = {}
    for key, value in obs.items():
        if isinstance(value, dict):
            out.update(flatten(value, f'{prefix}/{key}'))
        else:
            out[f'{prefix}/{key}'] = np.asarray(value)
    return out


def nest(flat, t):
    obs = {}
    for name, values in flat.items():
        *parents, leaf = name.split('/')[1:]
        target = obs
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = values[t]
    return obs


def write(directory):
    import gymnasium
    import tensorflow as tf

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dict_env  # noqa: F401 - registers DreamerTfTest/Dict-v0

    from dreamer_tf.agent import Agent
    from dreamer_tf.cli import export as export_cli
    from dreamer_tf.config import load_config
    from dreamer_tf.envs import make_env
    from dreamer_tf.run.loop import Counters

    task, run = 'gym_DreamerTfTest/Dict-v0', directory / 'run'
    config = load_config(['dreamerv3', 'gym', 'debug'],
                         {'task': task, 'logdir': str(run), 'env.size': [16, 16]})
    adapter = make_env(task, seed=3, size=(16, 16))
    agent = Agent(adapter.obs_space, adapter.act_space, config)
    tf.train.Checkpoint(agent=agent, counters=Counters()).save(str(run / 'checkpoints' / 'ckpt'))
    config.save(run / 'config.yaml')
    export_cli.main(['--logdir', str(run), '--out', str(directory / 'out'),
                     '--formats', 'onnx', 'tflite'])
    raw = gymnasium.make('DreamerTfTest/Dict-v0')
    obs, state = adapter.reset(), agent.initial_state(1)
    raw_obs, _ = raw.reset(seed=3)
    record = {'is_first': [], 'action': [], 'deter': [], 'observations': []}
    for _ in range(STEPS):
        batch = {k: np.asarray(obs[k])[None] for k in (*adapter.obs_space, 'is_first')}
        action, state = agent.policy(batch, state, explore=False)
        record['is_first'].append(obs['is_first'])
        record['observations'].append(flatten(raw_obs))
        record['action'].append(int(np.argmax(action.numpy()[0])))
        record['deter'].append(state[0]['deter'].numpy()[0])
        obs = adapter.step(action.numpy()[0])
        raw_obs = raw.step(record['action'][-1])[0]
        if obs['is_last']:
            obs, (raw_obs, _) = adapter.reset(), raw.reset()
    steps = record.pop('observations')
    flat = {k: np.stack([s[k] for s in steps]) for k in steps[0]}
    np.savez(directory / 'rollout.npz', **flat, **{k: np.asarray(v) for k, v in record.items()})
    print(f'wrote {directory / "out"} and {STEPS} steps of the TensorFlow policy')


def check(directory):
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        sys.exit('tensorflow is importable here: this check is for a runtime-only environment')
    from dreamer_tf_runtime import Policy

    with np.load(directory / 'rollout.npz', allow_pickle=False) as data:
        data = dict(data)
    flat = {k: v for k, v in data.items() if k.startswith('obs/')}
    for model in MODELS:
        policy = Policy(directory / 'out' / model)
        worst = 0.0
        for t in range(STEPS):
            if data['is_first'][t]:
                policy.reset()
            action = policy.act(nest(flat, t))
            assert action == data['action'][t], (model, t, action, data['action'][t])
            worst = max(worst, float(np.abs(policy.state['deter'][0] - data['deter'][t]).max()))
        assert worst < 1e-4, (model, worst)
        print(f'{model}: {STEPS} steps from raw observations, actions identical, '
              f'max state error {worst:.2e}')


if __name__ == '__main__':
    command, directory = sys.argv[1], Path(sys.argv[2])
    {'write': write, 'check': check}[command](directory)
