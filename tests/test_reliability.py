"""No silent data loss, no silent poisoning, no hang that ignores a stop: a test per
finding of the adversarial pass (tests/adversarial.py reruns the whole pass)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faulty_envs  # registers the DreamerTfTest/ envs
import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import ConfigError, load_config
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.envs.base import ActSpace, Space
from dreamer_tf.envs.parallel import NonFiniteError
from dreamer_tf.run import checkpoint as checkpoints
from dreamer_tf.run.logger import Logger
from dreamer_tf.run.loop import train
from dreamer_tf.run.restore import load_run
from dreamer_tf.run.rundir import RunDirError, RunLock

# Training runs and commands, end to end (`-m "not slow and not integration"`: unit tests).
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
TINY = {
    'run.steps': 120,
    'run.prefill': 64,
    'run.train_ratio': 8.0,
    'run.log_every': 40,
    'run.eval_every': 1000,
    'run.eval_episodes': 1,
}
# A training script whose main module registers the faulty envs first, as a user's own
# launcher would.
LAUNCHER = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
sys.path.insert(0, {str(ROOT / 'scripts')!r})
import faulty_envs
import train
train.main()
"""


def tiny(logdir, **overrides):
    return load_config(['dreamerv3', 'gym', 'debug'],
                       {**TINY, 'logdir': str(logdir), 'task': 'gym_CartPole-v1', **overrides})


def newest(directory):
    return int(checkpoints.saved(directory)[0].rsplit('-', 1)[1])


def files(directory):
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob('*') if p.is_file())


# 1. A lost or cut checkpoint index made the same command start over.

@pytest.mark.parametrize('damage', ['truncate', 'delete', 'empty', 'garble'])
def test_a_lost_checkpoint_index_resumes_from_the_newest_checkpoint(tmp_path, damage, capfd):
    _, counters = train(tiny(tmp_path, **{'run.save_every_secs': 0}))
    directory = tmp_path / 'checkpoints'
    number, stats = newest(directory), (tmp_path / 'stats.jsonl').read_text()
    index = directory / 'checkpoint'
    if damage == 'truncate':
        index.write_bytes(index.read_bytes()[:40])
    elif damage == 'delete':
        index.unlink()
    else:  # TensorFlow raises on these instead of reporting no checkpoint
        index.write_bytes(b'' if damage == 'empty' else bytes(range(177, 256)))
        with pytest.raises(Exception):  # noqa: B017 - whichever it raises
            tf.train.latest_checkpoint(str(directory))
    assert checkpoints.listed(directory) is None  # what TensorFlow alone makes of it
    # Evaluation and export find the checkpoint from its files.
    _, _, envs, path = load_run(tmp_path)
    envs.close()
    assert path.endswith(f'ckpt-{number}')
    capfd.readouterr()
    _, resumed = train(tiny(tmp_path, **{'run.steps': 160, 'run.save_every_secs': 0}))
    out = capfd.readouterr()
    assert f'Resumed from {directory / f"ckpt-{number}"}' in out.out, out
    assert 'Starting a new run' not in out.out
    assert 'rewriting it' in out.err
    assert resumed.updates.numpy() > counters.updates.numpy()
    assert newest(directory) > number  # numbering went on: nothing was overwritten
    assert (tmp_path / 'stats.jsonl').read_text().startswith(stats)
    assert tf.train.latest_checkpoint(str(directory)).endswith(f'ckpt-{newest(directory)}')


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, capfd):
    train(tiny(tmp_path, **{'run.save_every_secs': 0}))
    directory = tmp_path / 'checkpoints'
    number = newest(directory)
    for path in directory.glob(f'ckpt-{number}.data-*'):
        path.write_bytes(b'garbage')
    train(tiny(tmp_path, **{'run.steps': 140}))
    out = capfd.readouterr()
    assert f'cannot restore ckpt-{number}' in out.err
    assert f'Resumed from {directory / f"ckpt-{number - 1}"}' in out.out


def test_restart_moves_the_old_run_aside_and_deletes_nothing(tmp_path, capfd):
    run = tmp_path / 'run'
    train(tiny(run, **{'run.steps': 80}))
    before = files(run)
    capfd.readouterr()
    _, counters = train(tiny(run, **{'run.steps': 80}), restart=True)
    out = capfd.readouterr().out
    (aside,) = tmp_path.glob('run.replaced-*')
    assert f'moved the previous run to {aside}' in out and 'Starting a new run' in out
    assert files(aside) == before
    assert 80 <= int(counters.env_steps.numpy()) < 100


# 2. Two trainings on one run directory ran at once.

def test_a_second_training_on_a_run_directory_fails_naming_the_first(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunDirError, match=f'in use by process {os.getpid()} '):
        train(tiny(tmp_path))
    assert files(tmp_path) == ['run.lock']
    # A holder killed with -9 leaves a file, not a lock: the next training takes it over.
    code = ('import sys, time; from dreamer_tf.run.rundir import RunLock; '
            'lock = RunLock(sys.argv[1]).acquire(); print("held", flush=True); time.sleep(600)')
    holder = subprocess.Popen([sys.executable, '-c', code, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(RunDirError, match=f'in use by process {holder.pid} '):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    _, counters = train(tiny(tmp_path, **{'run.steps': 80}))
    assert counters.env_steps.numpy() >= 80


def test_the_cli_refuses_a_second_training_while_the_first_runs(tmp_path):
    run = tmp_path / 'run'
    cmd = [sys.executable, str(ROOT / 'scripts' / 'train.py'), '--configs', 'dreamerv3', 'gym',
           'debug', '--logdir', str(run), '--run.steps', '1e6', '--run.eval_every', '0']
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / 'config.yaml').exists():
            time.sleep(0.5)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert second.returncode == 1
    # One line, after TensorFlow's start-up log.
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith('error: run directory ') and f'in use by process {first.pid} ' in last


# 3. One NaN observation poisoned a run for good while it reported success.

def test_a_non_finite_observation_stops_the_run_naming_env_step_and_key(tmp_path):
    config = tiny(tmp_path, task='gym_DreamerTfTest/NanObs-v0', **{'run.steps': 200})
    message = (r"DreamerTfTest/NanObs-v0 env 0 returned a non-finite 'vector' at step 5 of its "
               r'episode\. Fix the environment, or set --env.nonfinite drop')
    with pytest.raises(NonFiniteError, match=message):
        train(config)
    # Stopped cleanly: a checkpoint, and nothing non-finite in the replay.
    assert checkpoints.saved(tmp_path / 'checkpoints')
    for path in (tmp_path / 'replay').glob('*.npz'):
        with np.load(path) as episode:
            assert all(np.isfinite(episode[k]).all()
                       for k in episode if episode[k].dtype.kind == 'f')


def test_drop_discards_non_finite_episodes_and_trains_on(tmp_path, capfd):
    config = tiny(tmp_path, task='gym_DreamerTfTest/InfReward-v0',
                  **{'run.steps': 200, 'env.nonfinite': 'drop', 'env.envs': 2,
                     'env.process': 'off'})
    agent, counters = train(config)
    assert "returned a non-finite 'reward' at step 5 of its episode; its episode is dropped" in (
        capfd.readouterr().err)
    assert counters.env_steps.numpy() >= 200
    rewards = []
    for path in (tmp_path / 'replay').glob('*.npz'):
        with np.load(path) as episode:
            rewards.append(episode['reward'])
    assert np.isfinite(np.concatenate(rewards)).all()
    assert all(np.isfinite(v.numpy()).all() for v in agent.variables)


def test_a_non_finite_batch_is_skipped_whole_and_the_next_one_applies():
    obs_space, act_space = {'vector': Space((4,), np.float32)}, ActSpace(False, 2)
    agent = Agent(obs_space, act_space, load_config(['dreamerv3', 'debug']))
    good = synthetic_batch(obs_space, act_space, 2, 8)
    agent.train(good)
    before = [v.numpy().copy() for v in agent.variables]
    vector = good['vector'].numpy()
    vector[0, 3, 1] = np.nan
    metrics = agent.train({**good, 'vector': tf.constant(vector)})
    assert float(metrics['model_grad_finite']) == 0 and float(metrics['actor_grad_finite']) == 0
    retnorm = agent.behavior.retnorm
    assert np.isfinite([retnorm.low.numpy(), retnorm.high.numpy()]).all()
    changed = [v.name for v, old in zip(agent.variables, before)
               if not np.array_equal(v.numpy(), old, equal_nan=True)]
    # Only the skip counters move, and the slow critic's step towards the unchanged critic.
    assert {n.split('/')[-2] for n in changed} == {'model_opt', 'actor_opt', 'critic_opt',
                                                    'behavior', 'slow_critic'}, changed
    assert all(n.endswith(('skipped:0', 'updates:0')) or 'slow_critic' in n
               for n in changed), changed
    metrics = agent.train(good)
    assert all(float(metrics[f'{k}_grad_finite']) == 1 for k in ('model', 'actor', 'critic'))


def test_an_episode_start_replaces_a_non_finite_state_exactly():
    obs_space, act_space = {'vector': Space((4,), np.float32)}, ActSpace(True, 3)
    agent = Agent(obs_space, act_space, load_config(['dreamerv3', 'debug']))
    obs = {'vector': np.ones((2, 4), np.float32), 'is_first': np.array([True, False])}
    latent, action = agent.initial_state(2)
    poisoned = ({k: tf.fill(v.shape, np.nan) for k, v in latent.items()},
                tf.fill(action.shape, np.nan))
    seed = tf.constant([1, 2])
    clean, _ = agent.policy_step(obs, (latent, action), seed, explore=False)
    again, (state, _) = agent.policy_step(obs, poisoned, seed, explore=False)
    np.testing.assert_array_equal(again[0], clean[0])  # the row that starts an episode
    assert np.isnan(state['deter'][1]).all()  # the row that does not keeps its state


def test_metrics_record_non_finite_values_as_such(tmp_path):
    Logger(tmp_path).write(1, {'model_loss': float('nan'), 'grad_norm': float('inf'), 'x': 2.0})
    record = json.loads((tmp_path / 'metrics.jsonl').read_text())
    assert np.isnan(record['model_loss']) and record['grad_norm'] == float('inf')


# 5. Nonsense hyperparameters were accepted; 6. two algorithm presets mixed silently.

@pytest.mark.parametrize('flags, message', [
    (['--model_opt.lr', 'nan'], 'model_opt.lr must be a finite number, got nan'),
    (['--model_opt.lr', '-1'], 'model_opt.lr must be > 0, got -1.0'),
    (['--run.train_ratio', 'nan'], 'run.train_ratio must be a finite number, got nan'),
    (['--run.train_ratio', 'inf'], 'run.train_ratio must be a finite number, got inf'),
    (['--rssm.deter', '-5'], 'rssm.deter must be > 0, got -5'),
    (['--imag.discount', '1.5'], r'imag.discount must be in \[0, 1\], got 1.5'),
    (['--env.envs', '0'], 'env.envs must be > 0, got 0'),
    (['--configs', 'dreamerv2'], r'--configs names 2 algorithm presets \(dreamerv3, dreamerv2\)'),
])
def test_nonsense_values_fail_in_one_line_before_anything_is_written(tmp_path, flags, message):
    run = tmp_path / 'run'
    result = subprocess.run(
        [sys.executable, str(ROOT / 'scripts' / 'train.py'), '--configs', 'dreamerv3', 'gym',
         'debug', '--logdir', str(run), *flags], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith('config error: ') and result.stderr.count('\n') == 1
    assert __import__('re').search(message, result.stderr), result.stderr
    assert not run.exists()
    with pytest.raises(ConfigError):
        load_config(['dreamerv3', 'dreamingv1'])


# 7. An env that never returned made a run ignore SIGTERM.

@pytest.mark.parametrize('env', ['Hang', 'StubbornHang'])
def test_a_stop_signal_ends_a_run_whose_env_hangs(tmp_path, env):
    run = tmp_path / 'run'
    launcher = tmp_path / 'launch.py'
    launcher.write_text(LAUNCHER)
    hung = tmp_path / 'hung'
    proc = subprocess.Popen(
        [sys.executable, str(launcher), '--configs', 'dreamerv3', 'gym', 'debug', '--task',
         f'gym_DreamerTfTest/{env}-v0', '--logdir', str(run), '--run.steps', '1e6',
         '--run.eval_every', '0', '--run.train_ratio', '4', '--run.save_every_secs', '1',
         '--run.stop_grace', '5'],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, faulty_envs.HUNG_FLAG: str(hung)})
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not hung.exists() and proc.poll() is None:
            time.sleep(0.2)
        assert hung.exists(), 'the env never hung'
        time.sleep(1)
        start = time.time()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        took = time.time() - start
    finally:
        proc.kill()
    stderr = proc.stderr.read()
    if env == 'Hang':  # interrupted in the env call, then a final checkpoint
        assert code == 0 and took < 20, stderr[-3000:]
        assert 'Stopped by SIGTERM: saving a checkpoint' in stderr
    else:  # the env swallows the interruption: the watchdog ends the process
        assert code == 128 + signal.SIGTERM and 5 <= took < 30, stderr[-3000:]
        assert 'did not stop within 5 s' in stderr
    # Either way the run resumes from an intact checkpoint.
    _, _, envs, path = load_run(run)
    envs.close()
    assert path
