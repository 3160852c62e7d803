"""`distribute.actors`: Ray actors collect for one learner (dreamer_tf/run/actors.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import faulty_envs  # registers the DreamerTfTest/ envs
import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.config import ConfigError, load_config
from dreamer_tf.run.actors import Actors
from dreamer_tf.run.loop import Counters, train

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


def checkpointed_steps(logdir):
    """The env steps counted by the run's latest checkpoint."""
    counters = Counters()
    tf.train.Checkpoint(counters=counters).restore(
        tf.train.latest_checkpoint(str(logdir / 'checkpoints'))).expect_partial()
    return int(counters.env_steps.numpy())


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
        # The policy version: -1 at a reset and at prefill's random steps, then the
        # learner's update count the actor's weights came from, never decreasing.
        versions = steps['meta_policy_version']
        assert versions[0] == -1 and (np.diff(versions[1:]) >= 0).all()
    assert max(int(steps['meta_policy_version'].max()) for steps in stored) > 0
    # The same command resumes: counters continue, from the checkpoint.
    _, counters = train(actor_config(logdir, **{'run.steps': 400}))
    assert 'Resumed from' in capfd.readouterr().out
    assert int(counters.env_steps.numpy()) == 400


def test_an_actor_that_raised_and_lives_on_starts_new_episodes(tmp_path, monkeypatch, capfd):
    """An actor that raised (or answered "unavailable" while alive) is not restarted: the
    learner drops its unfinished episodes, so its next chunk must start new ones."""
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get('PYTHONPATH')])]))
    monkeypatch.setenv(faulty_envs.RAISE_FLAG, str(tmp_path / 'raised'))
    logdir = tmp_path / 'run'
    _, counters = train(actor_config(logdir, task='gym_DreamerTfTest/Raise-v0',
                                     **{'env.envs': 2}))
    assert (tmp_path / 'raised').exists()
    assert 'warning: actor' in capfd.readouterr().err
    assert int(counters.env_steps.numpy()) == 320
    for steps in episodes(logdir):
        assert steps['is_first'][0] and not steps['is_first'][1:].any()
        assert steps['is_last'][-1] and not steps['is_last'][:-1].any()
        assert len(steps['is_first']) <= 21


class FakeRay:
    """The Ray calls `Actors` makes, each actor's `collect` answered in turn from `answers`
    (an exception is raised by `get`, as Ray raises a remote failure); `calls` keeps the
    keyword arguments of every request."""

    class exceptions:  # noqa: N801 - Ray's module name
        class ActorUnavailableError(Exception):
            pass

        class RayActorError(Exception):
            pass

        class RayTaskError(Exception):
            pass

    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def is_initialized(self):
        return True

    def remote(self, **options):
        def request(*args, **kwargs):
            self.calls.append(kwargs)
            return FakeRef(self.answers.pop(0))
        handle = SimpleNamespace(collect=SimpleNamespace(remote=request))
        return lambda cls: SimpleNamespace(remote=lambda *args: handle)

    def wait(self, refs, num_returns, timeout):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        if isinstance(ref.answer, Exception):
            raise ref.answer
        return ref.answer


class FakeRef:
    def __init__(self, answer):
        self.answer = answer


def test_an_actor_whose_answer_was_lost_is_asked_for_new_episodes(tmp_path, monkeypatch):
    """A network blip: Ray says "unavailable" for an actor that lives on mid-episode."""
    ray = FakeRay([FakeRay.exceptions.ActorUnavailableError('lost'), ([], 3), ([], 3)])
    monkeypatch.setitem(sys.modules, 'ray', ray)
    actors = Actors(actor_config(tmp_path, **{'distribute.actors': 1}), 1, 1,
                    {'obs_space': None, 'act_space': None})
    actors.request(0, 0)
    assert actors.next() == (0, None, None)  # the learner drops its unfinished episodes
    actors.request(0, 0)
    assert actors.next() == (0, [], 3)
    actors.request(0, 8)
    assert [call['fresh'] for call in ray.calls] == [False, True, False]


def test_a_learner_killed_with_sigkill_resumes_from_the_same_command(tmp_path):
    """kill -9 of the learner takes its Ray actors with it; the same command resumes from
    the last checkpoint and the replay holds only whole episodes."""
    logdir = tmp_path / 'run'
    args = ['--configs', 'dreamerv3', 'gym', 'debug', '--task', 'gym_CartPole-v1',
            '--logdir', str(logdir), '--run.prefill', '64', '--run.train_ratio', '4',
            '--run.save_every_secs', '1', '--run.eval_every', '100000',
            '--run.mode', 'async', '--distribute.actors', '2', '--distribute.chunk', '8']
    command = [sys.executable, str(TESTS.parent / 'scripts' / 'train.py'), *args]
    index = logdir / 'checkpoints' / 'checkpoint'
    with open(tmp_path / 'stderr.txt', 'w') as log:
        proc = subprocess.Popen([*command, '--run.steps', '100000'],
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.time() + 240
            while time.time() < deadline and not (
                    index.exists() and 'ckpt-3' in index.read_text()):
                time.sleep(0.5)
            assert index.exists(), (tmp_path / 'stderr.txt').read_text()[-3000:]
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    killed, killed_at = episodes(logdir), checkpointed_steps(logdir)
    assert killed_at > 0
    resumed = subprocess.run([*command, '--run.steps', str(killed_at + 64)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Resumed from' in resumed.stdout
    assert checkpointed_steps(logdir) >= killed_at + 64
    stored = episodes(logdir)
    assert len(stored) > len(killed)
    for steps in stored:
        assert steps['is_first'][0] and not steps['is_first'][1:].any()
        assert steps['is_last'][-1] and not steps['is_last'][:-1].any()


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
