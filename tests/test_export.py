"""Export: parity of every format with the TF policy, the TF-free runtime, metadata, scripts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.cli import export as export_cli
from dreamer_tf.config import DEFAULT_PATH, load_config
from dreamer_tf.envs import make_env
from dreamer_tf.envs.base import ActSpace, Space
from dreamer_tf.envs.from_config import env_args
from dreamer_tf.envs.image import resize
from dreamer_tf.envs.process import RENDER_GL
from dreamer_tf.run.loop import Counters
from dreamer_tf_export import metadata, parity, writers
from dreamer_tf_export.checkpoint import load_run, run_config
from dreamer_tf_export.policy import ExportError, ExportPolicy, _first_inside
from dreamer_tf_runtime import NonFiniteActionError, ObservationError, Policy, env_action

ROOT = Path(__file__).resolve().parent.parent
VECTOR = {'vector': Space((5,), np.float32)}
IMAGE_AND_VECTOR = {'image': Space((16, 16, 3), np.uint8), **VECTOR}


def make_agent(preset, obs_space, act_space, **overrides):
    tf.random.set_seed(0)  # the same initial weights in every run
    config = load_config(
        [preset, 'debug'], {'jit': 'off', 'precision': '32', 'run.expl_noise': 0.0, **overrides}
    )
    return Agent(obs_space, act_space, config)


def run_info(act_space):
    """The run's part of the metadata, for agents built without a run directory."""
    if act_space.discrete:
        space = {'discrete': True, 'n': act_space.n, 'start': 0}
    else:
        n = act_space.n
        space = {
            'discrete': False,
            'n': n,
            'shape': [n],
            'low': [-1.0] * n,
            'high': [1.0] * n,
            'dtype': 'float32',
        }
    return {
        'preset': 'test',
        'task': 'test',
        'train_step': 0,
        'updates': 0,
        'checkpoint': 'none',
        'action_space': space,
        'env': {},
        'eval_seed': 0,
    }


def export(policy, out, formats):
    paths = writers.export(policy, out, run_info(policy.act_space), formats)
    return {name: (path, metadata.read(path)) for name, path in paths.items()}


@pytest.fixture(scope='module')
def v3(tmp_path_factory):
    """DreamerV3 (categorical latent, learned initial state), image + vector, 3 actions."""
    agent = make_agent('dreamerv3', IMAGE_AND_VECTOR, ActSpace(True, 3))
    # As training would, move the learned initial state away from its zero init.
    agent.wm.rssm.initial_deter.assign(tf.random.stateless_normal((16,), [0, 1]))
    policy = ExportPolicy(agent)
    return agent, policy, export(policy, tmp_path_factory.mktemp('v3'), writers.ALL)


@pytest.mark.parametrize('fmt', ['savedmodel', 'onnx', 'tflite'])
def test_float32_formats_match_agent_over_rollout(v3, fmt):
    agent, _, models = v3
    path, meta = models[fmt]
    errors = parity.check(path, meta, agent, steps=50, batch=2)
    assert parity.violations(errors, 'float32') == {}, errors
    assert errors['action_mismatch_rate'] == 0


@pytest.mark.parametrize('variant', ['float16', 'int8'])
def test_quantised_tflite_within_documented_tolerance(v3, variant):
    agent, _, models = v3
    path, meta = models[f'tflite_{variant}']
    assert meta['variant'] == variant
    errors = parity.check(path, meta, agent, forced=True)
    assert parity.violations(errors, variant) == {}, errors
    # Quantisation changed the model: a test that could not fail would show no error.
    assert errors['next_deter'] > 1e-6
    sizes = {
        name: Path(models[name][0]).stat().st_size
        for name in ('tflite', 'tflite_float16', 'tflite_int8')
    }
    assert sizes['tflite_int8'] < sizes['tflite_float16'] < sizes['tflite']


def test_parity_check_detects_a_perturbed_state_and_a_missing_reset(v3):
    agent, _, models = v3
    path, meta = models['onnx']
    sequence = parity.random_inputs(meta, 50, 2, seed=0)
    assert any(step['is_first'].any() for step in sequence[1:])
    reference = parity.agent_rollout(agent, sequence)
    base = parity.runner(path, meta)
    calls = []

    def perturbed_once(inputs):
        calls.append(1)
        if len(calls) == 10:
            inputs = {**inputs, 'deter': inputs['deter'] + 1e-3}
        return base(inputs)

    def no_reset(inputs):
        return base({**inputs, 'is_first': np.zeros_like(inputs['is_first'])})

    for broken in (perturbed_once, no_reset):
        errors = parity.compare(reference, parity.rollout(broken, meta, sequence), True)
        assert parity.violations(errors, 'float32'), errors


def test_savedmodel_signatures_and_metadata(v3):
    agent, policy, models = v3
    path, meta = models['savedmodel']
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {'step', 'initial_state'}
    init = {
        k: v.numpy()
        for k, v in loaded.signatures['initial_state'](batch_size=tf.constant(3)).items()
    }
    latent, prev_action = agent.initial_state(1)
    expected = {'deter': latent['deter'], 'stoch': latent['stoch'], 'prev_action': prev_action}
    for key, value in metadata.initial_state(meta, 3).items():
        np.testing.assert_array_equal(value, init[key])
        np.testing.assert_allclose(value[:1], expected[key].numpy(), atol=1e-7)
    # The learned initial state is not zeros, so the metadata must carry its values.
    assert np.abs(init['deter']).min() > 0
    assert meta['observations'] == {
        'image': {'shape': [16, 16, 3], 'dtype': 'uint8'},
        'vector': {'shape': [5], 'dtype': 'float32'},
    }
    assert meta['inputs'] == ['image', 'vector', 'is_first', 'prev_action', 'deter', 'stoch']
    assert meta['outputs'] == ['action', 'next_deter', 'next_stoch']
    assert meta['state'] == {'deter': [16], 'stoch': [4 * 32], 'prev_action': [3]}
    assert models['onnx'][1]['opset'] == writers.DEFAULT_OPSET
    # Only the policy's variables are saved: not the decoder, critic or optimisers.
    saved = tf.train.list_variables(str(path / 'variables' / 'variables'))
    saved = [name for name, _ in saved if 'OBJECT_GRAPH' not in name]
    assert len(saved) == len(policy.variables) < len(agent.variables)
    # Writes go through temporary names that are renamed: none is left behind.
    assert not [p for p in Path(path).parent.iterdir() if p.name.startswith('.')]


def test_onnx_graph_has_no_random_ops(v3):
    import onnx

    model = onnx.load(str(v3[2]['onnx'][0]))
    ops = {node.op_type for node in model.graph.node}
    assert not {op for op in ops if 'Random' in op or 'Multinomial' in op}, ops
    assert 'Log' in ops  # symlog's Log1p, rewritten for tf2onnx


@pytest.mark.parametrize('preset', ['dreamerv1', 'dreamerv2', 'dreamerv3'])
def test_continuous_presets_match_agent(tmp_path, preset):
    """tanh-Normal (V1, Gaussian latent), truncated Normal (V2), Normal (V3)."""
    agent = make_agent(preset, VECTOR, ActSpace(False, 2))
    policy = ExportPolicy(agent)
    # TFLite of the discrete V3 policy is checked above; the Gaussian latent here.
    formats = ['onnx', 'tflite'] if preset == 'dreamerv1' else ['onnx']
    for fmt, (path, meta) in export(policy, tmp_path, formats).items():
        errors = parity.check(path, meta, agent)
        assert parity.violations(errors, 'float32') == {}, (fmt, errors)
        assert np.all(
            np.abs(parity.agent_rollout(agent, parity.random_inputs(meta, 3))[-1]['action']) <= 1
        )


def _agent_noise(policy, seed, batch):
    """The noise `Agent.policy_step(explore=True)` draws from `seed` (its seed splits)."""
    seed_obs, seed_act, _ = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    _, seed_post = tf.unstack(tf.random.experimental.stateless_split(seed_obs, 2))
    noise = {}
    for key, step_seed in (('latent_noise', seed_post), ('action_noise', seed_act)):
        spec = policy.noise[key]
        shape = (batch, *spec['shape'])
        if spec['dist'] == 'uniform':
            noise[key] = tf.random.stateless_uniform(shape, step_seed, minval=1e-20, maxval=1.0)
        else:
            noise[key] = tf.random.stateless_normal(shape, step_seed)
    return noise


@pytest.mark.parametrize(
    'preset,act_space',
    [
        ('dreamerv3', ActSpace(True, 3)),
        ('dreamerv3', ActSpace(False, 2)),
        ('dreamerv1', ActSpace(False, 2)),
    ],
)
def test_stochastic_step_samples_as_the_agent(preset, act_space):
    """Given the noise the agent's own sampler draws, the explicit-noise step gives its sample."""
    agent = make_agent(preset, VECTOR, act_space)
    policy = ExportPolicy(agent, stochastic=True)
    rng = np.random.default_rng(0)
    latent, prev_action = agent.initial_state(2)
    state = {'deter': latent['deter'], 'stoch': latent['stoch'], 'prev_action': prev_action}
    agent_state = (latent, prev_action)
    for t in range(5):
        obs = {
            'vector': rng.standard_normal((2, 5)).astype(np.float32),
            'is_first': np.array([t == 0, t == 3]),
        }
        seed = tf.constant([t, 7])
        action, agent_state = agent._policy(obs, agent_state, seed, True)
        inputs = {**obs, **state, **_agent_noise(policy, seed, 2)}
        out = policy.step(*(tf.constant(inputs[k]) for k in policy.input_names))
        np.testing.assert_allclose(out['action'].numpy(), action.numpy(), atol=1e-5)
        np.testing.assert_allclose(
            out['next_stoch'].numpy(), agent_state[0]['stoch'].numpy(), atol=1e-5
        )
        state = {
            'deter': out['next_deter'],
            'stoch': out['next_stoch'],
            'prev_action': out['action'],
        }


def test_stochastic_export_converts_and_runtime_reproduces_noise(tmp_path):
    """DreamerV2: Gumbel-max latent and the truncated-Normal rejection sampler (TFLite: slow
    test)."""
    agent = make_agent('dreamerv2', VECTOR, ActSpace(False, 2))
    policy = ExportPolicy(agent, stochastic=True)
    models = export(policy, tmp_path, ['onnx'])
    path, meta = models['onnx']
    assert meta['mode'] == 'stochastic'
    assert meta['inputs'][-2:] == ['latent_noise', 'action_noise']
    assert meta['noise']['action_noise'] == {'shape': [64, 2], 'dist': 'normal'}
    errors = parity.check(path, meta, policy=policy)
    assert parity.violations(errors, 'float32') == {}, errors
    obs = {'vector': np.ones(5, np.float32)}
    runs = [Policy(path, seed=s, observations='model') for s in (1, 1, 2)]
    for _ in range(10):
        for runtime in runs:
            runtime.step(obs)
    stoch = [runtime.state['stoch'] for runtime in runs]
    np.testing.assert_array_equal(stoch[0], stoch[1])
    assert not np.array_equal(stoch[0], stoch[2])


def test_truncated_normal_sampler_matches_tfp():
    """Rejection from explicit normal noise has TFP's TruncatedNormal mean and std."""
    import tensorflow_probability as tfp

    loc, scale = tf.constant([[0.9, -0.2]]), tf.constant([[1.5, 0.3]])
    noise = tf.random.stateless_normal((20000, 64, 2), [3, 4])
    samples = _first_inside(tf.tile(loc, [20000, 1]), tf.tile(scale, [20000, 1]), noise).numpy()
    assert np.all(np.abs(samples) <= 1)
    dist = tfp.distributions.TruncatedNormal(loc[0], scale[0], -1.0, 1.0)
    np.testing.assert_allclose(samples.mean(0), dist.mean().numpy(), atol=0.02)
    np.testing.assert_allclose(samples.std(0), dist.stddev().numpy(), atol=0.02)


def test_runtime_imports_without_tensorflow():
    code = "import sys, dreamer_tf_runtime; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)


def test_runtime_keeps_state_and_handles_episode_starts(v3):
    _, _, models = v3
    path, meta = models['onnx']
    sequence = parity.random_inputs(meta, 20, 2, seed=3)
    expected = parity.rollout(parity.runner(path, meta), meta, sequence)
    runtime = Policy(path, observations='model')
    runtime.reset(batch_size=2)
    for inputs, out in zip(sequence, expected):
        np.testing.assert_array_equal(runtime.step(inputs), out['action'])
        np.testing.assert_array_equal(runtime.state['deter'], out['next_deter'])
    # Without `is_first`, the first step after reset() starts the episode.
    runtime.reset()
    single = [{k: v[:1] for k, v in inputs.items()} for inputs in sequence[:5]]
    for inputs in single[1:]:
        inputs['is_first'] = np.array([False])
    expected = parity.rollout(parity.runner(path, meta), meta, single)
    for inputs, out in zip(single, expected):
        action = runtime.act({k: v[0] for k, v in inputs.items() if k != 'is_first'})
        assert action == int(out['action'][0].argmax())


def test_runtime_rejects_bad_observations_with_clear_errors(v3):
    runtime = Policy(v3[2]['onnx'][0], observations='model')
    good = {'image': np.zeros((16, 16, 3), np.uint8), 'vector': np.zeros(5, np.float32)}
    runtime.step(good)
    cases = {
        "'image': expected uint8 of shape (16, 16, 3), got float32 of shape (16, 16, 3)": {
            **good,
            'image': np.zeros((16, 16, 3), np.float32),
        },
        "'vector': expected float32 of shape (5,), got float32 of shape (1, 5)": {
            **good,
            'vector': np.zeros((1, 5), np.float32),
        },
        "'vector': expected float32 of shape (5,), got float64 of shape (5,)": {
            **good,
            'vector': np.zeros(5),
        },
        "'vector' is missing": {'image': good['image']},
        "'is_first': expected bool of shape ()": {**good, 'is_first': np.array([True])},
    }
    for message, obs in cases.items():
        with pytest.raises(ObservationError, match=message.replace('(', r'\(').replace(')', r'\)')):
            runtime.step(obs)
    runtime.reset(batch_size=4)
    with pytest.raises(ObservationError, match=r'expected uint8 of shape \(4, 16, 16, 3\)'):
        runtime.step(good)


def test_runtime_refuses_non_finite_input_and_restarts_exactly(v3):
    """Issue: one NaN observation made every later action NaN, also after is_first."""
    path = v3[2]['onnx'][0]
    good = {'image': np.zeros((16, 16, 3), np.uint8), 'vector': np.ones(5, np.float32)}
    bad = {**good, 'vector': np.array([0, np.nan, 0, 0, 0], np.float32)}
    with pytest.raises(ObservationError, match="'vector' holds NaN or infinite values"):
        Policy(path, observations='model').step(bad)
    with pytest.raises(ObservationError, match='NaN or infinite'):
        Policy(path, observations='model').step({**good, 'vector': np.full(5, np.inf, np.float32)})
    fresh = Policy(path, observations='model').step({**good, 'is_first': np.array(True)})
    allowed = Policy(path, nonfinite='allow', observations='model')
    allowed.step(good)
    # The model turns NaN into NaN actions: refused, never passed to an env as action 0.
    with pytest.raises(NonFiniteActionError):
        allowed.step({**bad, 'is_first': np.array(False)})
    # A restart is exact: the poisoned state is replaced, not blended with the initial one.
    np.testing.assert_array_equal(allowed.step({**good, 'is_first': np.array(True)}), fresh)


@pytest.mark.parametrize('model', ['policy.onnx', 'policy.tflite'])
def test_runtime_acts_on_the_envs_own_observations_as_the_agent(tmp_path, model):
    """From raw nested Dict observations (images, Box, Discrete, MultiBinary and
    MultiDiscrete leaves) the runtime, ONNX or LiteRT, takes the TF policy's actions and
    states over a 50-step rollout with carried state across episodes."""
    import dict_env  # noqa: F401 - registers DreamerTfTest/Dict-v0
    import gymnasium

    task, logdir, out = 'gym_DreamerTfTest/Dict-v0', tmp_path / 'run', tmp_path / 'out'
    obs_space = {'cam': Space((16, 16, 3), np.uint8), 'vector': Space((13,), np.float32)}
    _write_run(logdir, task, ActSpace(True, 3), obs_space, **{'env.size': [16, 16]})
    export_cli.main(['--logdir', str(logdir), '--out', str(out), '--formats', 'onnx', 'tflite'])
    agent = load_run(logdir).agent
    runtime = Policy(out / model)  # observations='env': the env's own
    assert runtime.meta['preprocess']['images'] == [{'key': 'cam', 'path': ['cam'],
                                                     'size': [16, 16]}]
    adapter = make_env(task, seed=3, size=(16, 16))
    raw = gymnasium.make('DreamerTfTest/Dict-v0')
    # Both seeded alike: the adapter seeds its first reset, later ones continue the RNG.
    obs, state = adapter.reset(), agent.initial_state(1)
    raw_obs, _ = raw.reset(seed=3)
    runtime.reset()
    for _ in range(50):
        batch = {k: np.asarray(v)[None] for k, v in obs.items() if k in (*obs_space, 'is_first')}
        action, state = agent.policy(batch, state, explore=False)
        assert runtime.act(raw_obs) == int(np.argmax(action.numpy()[0]))
        np.testing.assert_allclose(runtime.state['deter'], state[0]['deter'].numpy(), atol=1e-4)
        obs = adapter.step(action.numpy()[0])
        raw_obs, _, terminated, truncated, _ = raw.step(int(np.argmax(action.numpy()[0])))
        np.testing.assert_array_equal(obs['cam'], resize(raw_obs['cam'], (16, 16)))
        assert obs['is_last'] == (terminated or truncated)
        if obs['is_last']:
            obs, (raw_obs, _) = adapter.reset(), raw.reset()
            runtime.reset()


def _minatar_raw(seed):
    import minatar

    env = minatar.Environment('breakout', sticky_action_prob=0.1)
    env.seed(seed)
    env.reset()
    actions = env.minimal_action_set()

    def step(index):
        _, done = env.act(actions[index])
        if done:
            env.reset()
        return env.state(), done

    return env.state(), step


def _crafter_raw(seed):
    import crafter

    env = crafter.Env(size=(64, 64), reward=True, seed=seed)

    def step(index):
        image, _, done, _ = env.step(index)
        return (env.reset() if done else image), done

    return env.reset(), step


@pytest.mark.parametrize('suite,task,raw_env', [('minatar', 'minatar_breakout', _minatar_raw),
                                                 ('crafter', 'crafter_reward', _crafter_raw)])
def test_runtime_reads_minatar_and_crafter_observations(tmp_path, suite, task, raw_env):
    """MinAtar's bool object planes and Crafter's image, straight from the game's own API, give
    the runtime the TF policy's actions and states, as the adapter's preprocessing does."""
    logdir, out = tmp_path / 'run', tmp_path / 'out'
    adapter = make_env(**env_args(load_config(['dreamerv3', suite, 'debug'], {'task': task}), 3))
    _write_run(logdir, task, adapter.act_space, adapter.obs_space, blocks=[suite])
    export_cli.main(['--logdir', str(logdir), '--out', str(out), '--formats', 'onnx'])
    agent = load_run(logdir).agent
    runtime = Policy(out / 'policy.onnx')
    obs, state = adapter.reset(), agent.initial_state(1)
    raw, raw_step = raw_env(3)
    for _ in range(30):
        batch = {k: np.asarray(obs[k])[None] for k in ('image', 'is_first')}
        action, state = agent.policy(batch, state, explore=False)
        index = int(np.argmax(action.numpy()[0]))
        assert runtime.act(raw) == index
        np.testing.assert_allclose(runtime.state['deter'], state[0]['deter'].numpy(), atol=1e-4)
        obs = adapter.step(action.numpy()[0])
        if obs['is_last']:
            obs = adapter.reset()
            runtime.reset()
        raw, done = raw_step(index)
        assert done == bool(obs['is_first'])


def test_env_actions_match_the_env_adapters():
    from gymnasium import spaces

    from dreamer_tf.envs.gym import action_converter

    box = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    _, space, convert = action_converter(box)
    assert space == {
        'discrete': False,
        'n': 2,
        'shape': [2],
        'low': [-2.0, 0.0],
        'high': [2.0, 10.0],
        'dtype': 'float32',
    }
    actions = np.random.default_rng(0).uniform(-1.2, 1.2, (20, 2)).astype(np.float32)
    for action in actions:
        np.testing.assert_allclose(env_action(space, action), convert(action), rtol=1e-6)
    assert env_action(space, actions).shape == (20, 2)
    _, space, convert = action_converter(spaces.Discrete(5, start=2))
    assert space == {'discrete': True, 'n': 5, 'start': 2}
    onehot = np.eye(5, dtype=np.float32)[3]
    assert env_action(space, onehot) == convert(onehot) == 5


def test_metadata_check_names_the_problem(tmp_path):
    with pytest.raises(metadata.MetadataError, match='no metadata at'):
        metadata.read(tmp_path / 'missing.onnx')
    (tmp_path / 'bad.onnx.json').write_text('{"format_version": 1}')
    with pytest.raises(metadata.MetadataError, match='missing fields'):
        metadata.read(tmp_path / 'bad.onnx')
    folder = tmp_path / 'model'
    for content in ('old', 'new'):
        temp = metadata.temp_dir_beside(folder)
        (temp / 'file').write_text(content)
        metadata.replace_dir(temp, folder)
    assert (folder / 'file').read_text() == 'new'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.onnx.json', 'model']


def _write_run(logdir, task, act_space, obs_space, blocks=(), **overrides):
    config = load_config(
        ['dreamerv3', *blocks, 'debug'], {'task': task, 'logdir': str(logdir), **overrides}
    )
    agent = Agent(obs_space, act_space, config.update({'jit': 'off'}))
    counters = Counters()
    counters.env_steps.assign(1234)
    logdir.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(agent=agent, counters=counters).save(str(logdir / 'checkpoints' / 'ckpt'))
    config.save(logdir / 'config.yaml')
    return agent


def test_a_dm_control_pixel_run_trains_exports_and_serves(tmp_path):
    """A rendered env cannot run in a process with TensorFlow: export must build none,
    and --episodes must start its rendering worker from a script that imports none."""
    run, out = tmp_path / 'run', tmp_path / 'out'

    # This process turned rendering off (conftest.py); the scripts render as a user's would.
    env = {**os.environ, 'MUJOCO_GL': RENDER_GL}

    def script(name, *args):
        result = subprocess.run([sys.executable, str(ROOT / 'scripts' / f'{name}.py'), *args],
                                cwd=ROOT, capture_output=True, text=True, timeout=600,
                                check=False, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    script('train', '--configs', 'dreamerv3', 'dmc_vision', 'debug', '--task',
           'dmc_cartpole_balance', '--logdir', str(run), '--env.time_limit', '40',
           '--run.steps', '100', '--run.prefill', '40', '--run.train_ratio', '8',
           '--run.eval_every', '0')
    printed = script('export', '--logdir', str(run), '--out', str(out), '--check',
                     '--episodes', '1')
    result = json.loads(printed[printed.index('{'):])
    assert result['steps'] == 20 and result['max_action_diff'] < 1e-4
    assert sorted(p.name for p in out.glob('*.json')) == sorted(
        f'{name}.json' for name in writers.FILE_NAMES.values())
    # The console command's form, `dreamer-tf serve`; it must exit 0.
    served = subprocess.run([sys.executable, '-m', 'dreamer_tf', 'serve', str(out / 'policy.onnx'),
                             '--episodes', '2'], cwd=ROOT, capture_output=True, text=True,
                            timeout=600, check=False, env=env)
    assert served.returncode == 0, served.stderr[-3000:]
    served = json.loads(served.stdout)
    assert len(served['returns']) == 2 and served['task'] == 'dmc_cartpole_balance'
    # The runtime alone renders the camera frames itself and acts on them: the same returns.
    alone = subprocess.run(
        [sys.executable, '-m', 'dreamer_tf_runtime.serve', str(out / 'policy.tflite'),
         '--episodes', '2'], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
        env=env)
    np.testing.assert_allclose(json.loads(alone.stdout)['returns'], served['returns'],
                               rtol=1e-4)


def test_export_script_and_serve_give_the_tf_returns(tmp_path, capsys):
    """Pendulum: continuous actions de-normalised by the env, a return that differs per step."""
    logdir, out = tmp_path / 'run', tmp_path / 'out'
    _write_run(
        logdir,
        'gym_Pendulum-v1',
        ActSpace(False, 1),
        {'vector': Space((3,), np.float32)},
        **{'env.time_limit': 60},
    )
    run = load_run(logdir)
    assert run.counters['env_steps'] == 1234
    assert run.action_space == {
        'discrete': False,
        'n': 1,
        'shape': [1],
        'low': [-2.0],
        'high': [2.0],
        'dtype': 'float32',
    }
    capsys.readouterr()
    export_cli.main(
        [
            '--logdir',
            str(logdir),
            '--out',
            str(out),
            '--formats',
            'onnx',
            '--episodes',
            '1',
            '--seed',
            '5',
        ]
    )
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index('{') :])
    # Actions agree to float32 rounding (~1e-7), so Pendulum's returns agree to ~1e-8 relative.
    np.testing.assert_allclose(result['runtime_returns'], result['tf_returns'], rtol=1e-6)
    assert result['steps'] == 60 and result['max_action_diff'] < 1e-4
    meta = metadata.read(out / 'policy.onnx')
    assert (meta['preset'], meta['train_step']) == ('dreamerv3', 1234)
    assert meta['checkpoint'] == str((logdir / 'checkpoints' / 'ckpt-1').resolve())
    code = (
        'import runpy, sys; sys.argv = ["serve.py", sys.argv[1], "--seed", "5"]; '
        'runpy.run_path("scripts/serve.py", run_name="__main__"); '
        "assert 'tensorflow' not in sys.modules"
    )
    served = subprocess.run(
        [sys.executable, '-c', code, str(out / 'policy.onnx')],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(served.stdout)['returns'] == result['runtime_returns']
    # The runtime alone, on the raw gymnasium env and its own observations: the same returns.
    code = ('import sys; from dreamer_tf_runtime import serve; serve.main(sys.argv[1:]); '
            "assert 'tensorflow' not in sys.modules and 'dreamer_tf' not in sys.modules")
    alone = subprocess.run([sys.executable, '-c', code, str(out / 'policy.onnx'), '--seed', '5'],
                           cwd=ROOT, check=True, capture_output=True, text=True)
    # (The adapters round each reward to float32 before summing; the raw env does not.)
    np.testing.assert_allclose(json.loads(alone.stdout)['returns'], result['runtime_returns'],
                               rtol=1e-6)


def test_planet_and_bad_runs_are_clear_errors(tmp_path):
    config = load_config(['planet', 'dmc_vision', 'debug'])
    config.save(tmp_path / 'config.yaml')
    with pytest.raises(ExportError, match='PlaNet.*CEM.*not exportable'):
        run_config(tmp_path)
    with pytest.raises(ExportError, match='config.yaml not found'):
        run_config(tmp_path / 'nowhere')
    load_config(['dreamerv3', 'debug']).save(tmp_path / 'config.yaml')
    with pytest.raises(ExportError, match='no checkpoint in'):
        load_run(tmp_path)
    run = tmp_path / 'run'
    _write_run(run, 'gym_CartPole-v1', ActSpace(True, 2), {'vector': Space((4,), np.float32)})
    load_config(['dreamerv3', 'debug'], {'rssm.deter': 32}).save(run / 'config.yaml')
    with pytest.raises(ExportError, match='no checkpoint in .* restores .*ckpt-1: '):
        load_run(run)


@pytest.mark.skipif('planet:' not in DEFAULT_PATH.read_text(), reason='no planet preset yet')
def test_planet_agent_is_a_clear_error():
    agent = make_agent('planet', VECTOR, ActSpace(False, 2))
    with pytest.raises(ExportError, match='PlaNet.*CEM.*not exportable'):
        ExportPolicy(agent)


PRESETS = ['dreamerv1', 'dreamerv2', 'dreamerv3', 'dreamingv1', 'dreamingv2']


@pytest.mark.slow
@pytest.mark.parametrize('preset', PRESETS)
@pytest.mark.parametrize('discrete', [True, False])
def test_every_actor_preset_exports_in_every_format(tmp_path, preset, discrete):
    if preset not in DEFAULT_PATH.read_text():
        pytest.skip(f'preset {preset} is not in configs.yaml yet')
    # DreamerV1/V2's 'valid' convolutions take the papers' 64x64 images.
    valid = load_config([preset]).encoder.cnn_padding == 'valid'
    obs = {**VECTOR, 'image': Space((64, 64, 3) if valid else (16, 16, 3), np.uint8)}
    agent = make_agent(preset, obs, ActSpace(discrete, 3))
    policy = ExportPolicy(agent)
    for fmt, (path, meta) in export(policy, tmp_path, writers.ALL).items():
        variant = meta['variant']
        errors = parity.check(path, meta, agent, forced=variant != 'float32')
        assert parity.violations(errors, variant) == {}, (fmt, errors)


def test_benchmark_times_every_engine(v3):
    from dreamer_tf_export.benchmark import benchmark

    paths = [path for path, _ in v3[2].values()]
    rows = benchmark(paths, steps=4, warmup=1, block=2)
    engines = [row['engine'] for row in rows]
    assert engines == [
        'tf_savedmodel',
        'onnxruntime',
        'runtime Policy.step',
        'tflite_float32',
        'runtime Policy.step (LiteRT float32)',
        'tflite_float16',
        'runtime Policy.step (LiteRT float16)',
        'tflite_int8',
        'runtime Policy.step (LiteRT int8)',
    ]
    for row in rows:
        assert row['size_bytes'] > 0 and 0 < row['median_ms'] <= row['p99_ms']


@pytest.mark.slow
@pytest.mark.parametrize('preset,discrete', [('dreamerv3', True), ('dreamerv2', False)])
def test_stochastic_export_in_every_float32_format(tmp_path, preset, discrete):
    agent = make_agent(preset, VECTOR, ActSpace(discrete, 3))
    policy = ExportPolicy(agent, stochastic=True)
    for fmt, (path, meta) in export(policy, tmp_path, ['savedmodel', 'onnx', 'tflite']).items():
        errors = parity.check(path, meta, policy=policy)
        assert parity.violations(errors, 'float32') == {}, (fmt, errors)
