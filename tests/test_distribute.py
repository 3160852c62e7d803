"""Data parallelism (dreamer_tf/distribute.py): a mirrored update over two devices
equals one device's update on the combined batch; configuration errors."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from dreamer_tf import dists
from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.envs.base import ActSpace, Space

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Logical devices must be configured before TensorFlow initialises its
# runtime, which the test process already has: the comparison runs in a
# fresh interpreter with the CPU split into two logical devices.
COMPARE = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from dreamer_tf.agent import Agent
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.config import load_config
from dreamer_tf.envs.base import ActSpace, Space
preset, discrete = sys.argv[1], sys.argv[2] == 'discrete'
obs_space = {'vector': Space((5,), np.float32)}
act_space = ActSpace(True, 3) if discrete else ActSpace(False, 2)
batch = synthetic_batch(obs_space, act_space, 4, 8)
out, agents = {}, {}
for strategy in ('none', 'mirrored'):
    config = load_config([preset, 'debug'], {'distribute.strategy': strategy, 'run.batch_size': 4})
    tf.random.set_seed(0)
    agent = agents[strategy] = Agent(obs_space, act_space, config)
    metrics = [{k: float(v) for k, v in agent.train(batch).items()} for _ in range(2)]
    out[strategy] = {
        'replicas': agent.strategy.num_replicas_in_sync if agent.strategy else 1,
        'metrics': metrics,
        'variables': {v.name: v.numpy().tolist() for v in agent.variables},
    }
# The mirrored agent acts, and its checkpoint restores into a one-device agent.
obs = {'vector': np.zeros((3, 5), np.float32), 'is_first': np.ones(3, bool)}
action, _ = agents['mirrored'].policy(obs, agents['mirrored'].initial_state(3), explore=False)
out['policy_shape'] = list(action.shape)
path = tf.train.Checkpoint(agent=agents['mirrored']).save(sys.argv[3] + '/ckpt')
fresh = Agent(obs_space, act_space, load_config([preset, 'debug'], {'run.batch_size': 4}))
tf.train.Checkpoint(agent=fresh).restore(path).assert_existing_objects_matched()
out['restored'] = {v.name: v.numpy().tolist() for v in fresh.variables}
print(json.dumps(out))
"""


def test_mirrored_update_equals_one_device_on_the_combined_batch(tmp_path):
    """DreamerV3, continuous actions: the all-reduced gradients, split-invariant
    noise and gathered return percentiles give one device's update."""
    result = subprocess.run(
        [sys.executable, '-c', COMPARE, 'dreamerv3', 'continuous', str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = out['none'], out['mirrored']
    assert (one['replicas'], two['replicas']) == (1, 2)
    for first, second in zip(one['metrics'], two['metrics']):
        assert first.keys() == second.keys()
        for key in first:
            assert second[key] == pytest.approx(first[key], rel=1e-4, abs=1e-6), key
    assert one['variables'].keys() == two['variables'].keys()
    for name, value in one['variables'].items():
        np.testing.assert_allclose(
            two['variables'][name], value, rtol=1e-4, atol=1e-6, err_msg=name
        )
    # Two updates moved the weights: the comparison is not between initial values.
    assert one['metrics'][0]['model_loss'] != one['metrics'][1]['model_loss']
    assert out['policy_shape'] == [3, 2]
    for name, value in out['restored'].items():
        np.testing.assert_array_equal(value, two['variables'][name], err_msg=name)


def _config(**overrides):
    return load_config(['dreamerv3', 'debug'], overrides)


def test_mirrored_rejects_a_batch_that_does_not_split_evenly():
    config = _config(**{'distribute.strategy': 'mirrored',
                        'distribute.devices': ('/cpu:0', '/cpu:1'),
                        'run.batch_size': 3})
    with pytest.raises(ValueError, match='run.batch_size 3 must be divisible by the 2 replicas'):
        Agent({'vector': Space((5,), np.float32)}, ActSpace(False, 2), config)


def test_mirrored_rejects_xla_and_unknown_strategies():
    obs, act = {'vector': Space((5,), np.float32)}, ActSpace(False, 2)
    config = _config(**{'distribute.strategy': 'mirrored', 'jit': 'on'})
    with pytest.raises(ValueError, match='jit: on cannot compile'):
        Agent(obs, act, config)
    with pytest.raises(ValueError, match="distribute.strategy must be one of"):
        Agent(obs, act, _config(**{'distribute.strategy': 'horovod'}))


def test_truncated_normal_inverse_cdf_sampler_matches_tfp_and_is_reparameterised():
    """DreamerV2's actor samples by inverting the CDF: TFP's mean and std, values in
    [-1, 1], and gradients through the sample."""
    loc = tf.constant([[0.9, -0.2, -1.0]])
    std = tf.constant([[1.5, 0.3, 0.1]])
    rows = 40000
    dist = dists.TruncNormal(tf.tile(loc, [rows, 1]), tf.tile(std, [rows, 1]))
    samples = dist.sample(tf.constant([3, 4])).numpy()
    assert np.all(np.abs(samples) <= 1)
    ref = tfp.distributions.TruncatedNormal(loc[0], std[0], -1.0, 1.0)
    np.testing.assert_allclose(samples.mean(0), ref.mean().numpy(), atol=0.01)
    np.testing.assert_allclose(samples.std(0), ref.stddev().numpy(), atol=0.01)
    with tf.GradientTape() as tape:
        tape.watch(loc)
        value = tf.reduce_sum(dists.TruncNormal(loc, std).sample(tf.constant([1, 2])))
    grad = tape.gradient(value, loc).numpy()
    assert np.all(np.isfinite(grad)) and np.all(grad > 0)


def test_mirrored_rejects_devices_this_machine_lacks():
    config = _config(**{'distribute.strategy': 'mirrored', 'distribute.devices': ('/gpu:7',),
                        'run.batch_size': 4})
    with pytest.raises(ValueError, match=r"distribute.devices \['/gpu:7'\].*available"):
        Agent({'vector': Space((5,), np.float32)}, ActSpace(False, 2), config)
