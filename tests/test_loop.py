"""The training loop end to end on a tiny config: metrics, checkpoints, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.run.loop import Counters, train

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    'run.steps': 160,
    'run.prefill': 64,
    'run.train_ratio': 8.0,
    'run.log_every': 40,
    'run.eval_every': 80,
    'run.eval_episodes': 1,
}


def tiny_config(logdir, **overrides):
    return load_config(
        ['dreamerv3', 'gym', 'debug'],
        {**TINY, 'logdir': str(logdir), 'task': 'gym_CartPole-v1', **overrides},
    )


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


def test_train_resume_continues_counters_and_weights(tmp_path):
    agent, counters = train(tiny_config(tmp_path))
    assert counters.env_steps.numpy() >= 160
    assert counters.updates.numpy() > 0
    records = read_jsonl(tmp_path / 'metrics.jsonl')
    assert any('model_loss' in r for r in records) and any('eval_return' in r for r in records)
    assert (tmp_path / 'config.yaml').exists()
    assert list(tmp_path.glob('events.out.tfevents*'))
    assert list((tmp_path / 'replay').glob('*.npz'))

    # A fresh agent restored from the checkpoint has exactly the trained weights.
    config = tiny_config(tmp_path)
    fresh = Agent(agent.obs_space, agent.act_space, config)
    fresh_counters = Counters()
    latest = tf.train.latest_checkpoint(str(tmp_path / 'checkpoints'))
    tf.train.Checkpoint(agent=fresh, counters=fresh_counters).restore(latest).assert_consumed()
    for a, b in zip(agent.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert fresh_counters.updates.numpy() == counters.updates.numpy()

    # Resuming with a larger budget continues from the saved counters.
    updates_before = int(counters.updates.numpy())
    _, resumed = train(tiny_config(tmp_path, **{'run.steps': 240}))
    assert resumed.env_steps.numpy() >= 240
    assert resumed.updates.numpy() > updates_before
    steps = [r['step'] for r in read_jsonl(tmp_path / 'metrics.jsonl')]
    assert max(steps) >= 200


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_resume_after_kill(tmp_path, sig):
    cmd = [
        sys.executable,
        str(ROOT / 'scripts' / 'train.py'),
        '--configs',
        'dreamerv3',
        'gym',
        'debug',
        '--task',
        'gym_CartPole-v1',
        '--logdir',
        str(tmp_path),
        '--run.steps',
        '100000',
        '--run.prefill',
        '64',
        '--run.train_ratio',
        '4',
        '--run.save_every_secs',
        '1',
        '--run.eval_every',
        '100000',
    ]
    log = open(tmp_path / 'stderr.txt', 'w')
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    index = tmp_path / 'checkpoints' / 'checkpoint'
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (index.exists() and 'ckpt-3' in index.read_text()):
            time.sleep(0.5)
        assert index.exists(), 'the run never wrote a checkpoint'
    finally:
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=60)
    log.close()
    if sig == signal.SIGTERM:
        # SIGTERM saves a final checkpoint and exits cleanly.
        assert code == 0, (tmp_path / 'stderr.txt').read_text()[-3000:]
        assert 'Stopped by SIGTERM' in (tmp_path / 'stderr.txt').read_text()
    counters = Counters()
    tf.train.Checkpoint(counters=counters).restore(
        tf.train.latest_checkpoint(str(tmp_path / 'checkpoints'))
    ).expect_partial()
    killed_at = int(counters.env_steps.numpy())
    assert killed_at > 0
    _, resumed = train(tiny_config(tmp_path, **{'run.steps': killed_at + 40}))
    assert resumed.env_steps.numpy() >= killed_at + 40


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path):
    train(tiny_config(tmp_path, **{'run.steps': 80, 'run.eval_every': 1000}))
    data_files = sorted((tmp_path / 'checkpoints').glob('*.data-*'))
    assert data_files
    for path in data_files:
        path.write_bytes(b'garbage')
    recorded = (tmp_path / 'config.yaml').read_text()
    with pytest.raises(RuntimeError, match='cannot restore checkpoint'):
        train(tiny_config(tmp_path, **{'run.steps': 120, 'seed': 7}))
    assert all(p.read_bytes() == b'garbage' for p in data_files)
    assert (tmp_path / 'config.yaml').read_text() == recorded


def test_cli_config_errors_are_clear():
    script = str(ROOT / 'scripts' / 'train.py')
    result = subprocess.run(
        [sys.executable, script, '--configs', 'dreamerv3', '--rssm.dter', '8'],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and 'rssm.deter' in result.stderr
    result = subprocess.run(
        [sys.executable, script, '--run.steps', 'many'], capture_output=True, text=True
    )
    assert result.returncode != 0 and 'run.steps' in result.stderr and 'int' in result.stderr


def test_unknown_task_is_clear(tmp_path):
    with pytest.raises(ValueError, match='suite'):
        train(tiny_config(tmp_path, task='atary_Pong'))
