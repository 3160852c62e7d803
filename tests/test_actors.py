"""`distribute.actors`: Ray actors collect for one learner (dreamer_tf/run/actors.py)."""

import os
from pathlib import Path

import faulty_envs  # registers the DreamerTfTest/ envs
import numpy as np
import pytest

from dreamer_tf.config import ConfigError, load_config
from dreamer_tf.run.loop import train

pytest.importorskip('ray')
pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent


def actor_config(logdir, **overrides):
    return load_config(['dreamerv3', 'gym', 'debug'], {
        'task': 'gym_DreamerTfTest/Exit-v0', 'env.imports': ['faulty_envs'],
        'env.process': 'off', 'logdir': str(logdir), 'run.steps': 320, 'run.prefill': 64,
        'run.train_ratio': 8.0, 'run.log_every': 80, 'run.eval_every': 1000,
        'run.eval_episodes': 1, 'run.mode': 'async', 'distribute.actors': 2,
        'distribute.chunk': 8, **overrides})


def episodes(logdir):
    """Every episode file of the run's replay, loaded."""
    return [dict(np.load(path)) for path in sorted((logdir / 'replay').glob('*.npz'))]


def test_two_actors_feed_a_learner_through_an_actor_crash_and_a_resume(
        tmp_path, monkeypatch, capfd):
    # The actors are Ray worker processes: they find faulty_envs through PYTHONPATH.
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get('PYTHONPATH')])]))
    monkeypatch.setenv(faulty_envs.EXIT_FLAG, str(tmp_path / 'exited'))
    logdir = tmp_path / 'run'
    _, counters = train(actor_config(logdir))
    err = capfd.readouterr().err
    # One actor's process ended at step 5 of its fifth episode; Ray restarted it.
    assert (tmp_path / 'exited').exists()
    assert 'warning: actor' in err and 'failed' in err, err[-2000:]
    # The sync loop's update count for 320 env steps at this ratio (tests/test_loop.py).
    assert int(counters.env_steps.numpy()) == 320
    assert int(counters.updates.numpy()) == 128
    stored = episodes(logdir)
    assert len(stored) >= 10
    for steps in stored:
        assert steps['is_first'][0] and not steps['is_first'][1:].any()
        assert steps['is_last'][-1] and not steps['is_last'][:-1].any()
        assert len(steps['is_first']) <= 21 and np.isfinite(steps['vector']).all()
    # The same command resumes: counters continue, from the checkpoint.
    _, counters = train(actor_config(logdir, **{'run.steps': 400}))
    assert 'Resumed from' in capfd.readouterr().out
    assert int(counters.env_steps.numpy()) == 400


def test_an_actor_that_keeps_failing_stops_the_run_with_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get('PYTHONPATH')])]))
    config = actor_config(tmp_path / 'run', task='gym_DreamerTfTest/NoStart-v0',
                          **{'distribute.actors': 1})
    with pytest.raises(RuntimeError, match='actor 0 failed 3 times in a row .*cannot start'):
        train(config)


def test_actors_need_the_async_mode(tmp_path):
    with pytest.raises(ConfigError, match='set run.mode async'):
        train(actor_config(tmp_path / 'run', **{'run.mode': 'sync'}))
    assert not (tmp_path / 'run').exists()
