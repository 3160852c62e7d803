"""Data parallelism (dreamer_tf/distribute.py): a mirrored update over two devices
equals one device's update on the combined batch; configuration errors."""

import json
import os
import pathlib
import socket
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


# One worker of a multi-worker update, or (strategy none) one process on the whole batch:
# the same name-seeded weights, two updates with fixed seeds, each worker on its rows.
WORKER = """
import json, sys
import numpy as np
from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.diagnostics.fingerprint import seed_by_name
from dreamer_tf.envs.base import ActSpace, Space
index, workers, strategy, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
obs_space, act_space = {'vector': Space((5,), np.float32)}, ActSpace(False, 2)
rows = 4 // workers
config = load_config(['dreamerv3', 'debug'],
                     {'distribute.strategy': strategy, 'run.batch_size': rows})
agent = Agent(obs_space, act_space, config)  # first: the strategy starts the collectives
import tensorflow as tf
seed_by_name(agent)
metrics = []
for seed in range(2):
    batch = synthetic_batch(obs_space, act_space, 4, 8, seed=seed)
    mine = {k: v[index * rows:(index + 1) * rows] for k, v in batch.items()}
    step = agent.update(mine, tf.constant([seed, 7], tf.int64))
    metrics.append({k: float(v) for k, v in step.items()})
replicas = agent.strategy.num_replicas_in_sync if agent.strategy else 1
with open(out, 'w') as f:
    json.dump({'replicas': replicas, 'metrics': metrics,
               'variables': {v.name: v.numpy().tolist() for v in agent.variables}}, f)
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('localhost', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_update_as_one_process_on_their_combined_batch(tmp_path):
    """distribute.strategy multi_worker: two processes on localhost (TF_CONFIG), each
    feeding its own 2 rows, end with the variables of one process updated on all 4."""
    cluster = [f'localhost:{port}' for port in _free_ports(2)]

    def start(index, workers, strategy):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
        if strategy == 'multi_worker':
            env['TF_CONFIG'] = json.dumps({'cluster': {'worker': cluster},
                                           'task': {'type': 'worker', 'index': index}})
        out = tmp_path / f'{strategy}-{index}.json'
        command = [sys.executable, '-c', WORKER, str(index), str(workers), strategy, str(out)]
        return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE,
                                text=True), out

    runs = [start(0, 2, 'multi_worker'), start(1, 2, 'multi_worker'), start(0, 1, 'none')]
    for process, _ in runs:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    (_, first), (_, second), (_, single) = runs
    first, second, one = (json.loads(path.read_text()) for path in (first, second, single))
    assert (first['replicas'], one['replicas']) == (2, 1)
    for name, value in one['variables'].items():
        np.testing.assert_array_equal(second['variables'][name], first['variables'][name])
        np.testing.assert_allclose(first['variables'][name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    for ours, theirs in zip(first['metrics'], one['metrics']):
        for key in theirs:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    assert one['metrics'][0]['model_loss'] != one['metrics'][1]['model_loss']


def test_multi_worker_without_a_cluster_is_a_clear_error(monkeypatch):
    monkeypatch.delenv('TF_CONFIG', raising=False)
    with pytest.raises(ValueError, match='multi_worker needs TF_CONFIG'):
        Agent({'vector': Space((5,), np.float32)}, ActSpace(False, 2),
              _config(**{'distribute.strategy': 'multi_worker'}))


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
