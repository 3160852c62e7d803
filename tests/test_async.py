"""`run.mode: async`: updates in a learner thread beside collection (run/learner.py)."""

import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import ConfigError, load_config
from dreamer_tf.envs.base import ActSpace, Space
from dreamer_tf.fileio import read_jsonl
from dreamer_tf.run.learner import Learner, copy_policy
from dreamer_tf.run.loop import train
from dreamer_tf.run.schedule import scheduled_updates


def _config(logdir, **overrides):
    return load_config(['dreamerv3', 'gym', 'debug'], {
        'task': 'gym_CartPole-v1', 'logdir': str(logdir), 'run.steps': 240, 'run.prefill': 64,
        'run.train_ratio': 16.0, 'run.log_every': 80, 'run.eval_every': 0,
        'run.mode': 'async', 'run.policy_refresh': 4, 'run.async_slack': 2, **overrides})


def _scheduled(config, policy_steps):
    prefill = -(-config.run.prefill // config.env.action_repeat)
    return scheduled_updates(config.run, policy_steps - prefill)


@pytest.mark.integration
def test_async_trains_to_the_budget_with_the_sync_loops_updates_and_resumes(tmp_path):
    config = _config(tmp_path)
    _, counters = train(config)
    assert counters.env_steps.numpy() == 240
    # The learner paid what it owed: the sync loop's count at this train ratio.
    updates = int(counters.updates.numpy())
    assert updates == _scheduled(config, int(counters.policy_steps.numpy())) > 0
    assert any('model_loss' in row for row in read_jsonl(tmp_path / 'metrics.jsonl'))
    # Each stored step names the policy version that chose it: -1 at resets and in
    # prefill, then the update count of the collecting copy, refreshed after 4 or more.
    versions = np.concatenate([np.load(path)['meta_policy_version']
                               for path in sorted((tmp_path / 'replay').glob('*.npz'))])
    acted = versions[versions >= 0]
    assert len(acted) and (np.diff(acted) >= 0).all() and acted.max() <= updates
    assert (np.diff(np.unique(acted)) >= 4).all()
    # Resumed with a larger budget, it continues its counters and schedule.
    _, resumed = train(_config(tmp_path, **{'run.steps': 400}))
    assert resumed.env_steps.numpy() == 400
    assert int(resumed.updates.numpy()) == _scheduled(config, 400) > updates


@pytest.mark.integration
def test_a_failing_update_stops_async_training_with_its_error(tmp_path, monkeypatch):
    def broken(self, data):
        raise ValueError('the update broke')

    monkeypatch.setattr(Agent, 'train', broken)
    with pytest.raises(RuntimeError, match='learner thread failed: ValueError'):
        train(_config(tmp_path))


def test_learner_pays_what_it_owes_and_no_more():
    done, owed_total = [], [0]
    learner = Learner(update=lambda: done.append(1),
                      owed=lambda: owed_total[0] - len(done), stopped=lambda: False)
    learner.start()
    owed_total[0] = 5
    learner.notify()
    learner.wait_while(lambda: owed_total[0] - len(done) > 0)
    assert len(done) == 5
    time.sleep(0.2)  # nothing owed: it waits
    assert len(done) == 5 and learner.is_alive()
    owed_total[0] = 8
    learner.finish()  # pays the last 3, then ends
    assert len(done) == 8 and not learner.is_alive()


def test_learner_stops_when_asked_with_updates_owed():
    stop = threading.Event()
    learner = Learner(update=lambda: time.sleep(0.01), owed=lambda: 1, stopped=stop.is_set)
    learner.start()
    stop.set()
    learner.notify()
    learner.join(5)
    assert not learner.is_alive()


def test_copy_policy_gives_the_target_the_sources_policy():
    config = load_config(['dreamerv3', 'debug'])
    obs_space, act_space = {'vector': Space((3,), np.float32)}, ActSpace(False, 2)
    source, target = Agent(obs_space, act_space, config), Agent(obs_space, act_space, config)
    for var in source.policy_variables():
        var.assign(var + 0.1)
    copy_policy(source, target)
    obs = {'vector': np.ones((1, 3), np.float32), 'is_first': np.ones(1, bool)}
    seed = tf.constant([1, 2], tf.int64)
    act = lambda agent: agent.policy_step(obs, agent.initial_state(1), seed, False)[0].numpy()
    np.testing.assert_array_equal(act(source), act(target))
    # The optimisers' state is the learner's alone.
    assert len(target.policy_variables()) < len(target.variables)


def test_run_mode_is_checked():
    with pytest.raises(ConfigError, match='run.mode must be one of sync, async'):
        load_config(['dreamerv3'], {'run.mode': 'parallel'})
    with pytest.raises(ConfigError, match='run.policy_refresh must be > 0'):
        load_config(['dreamerv3'], {'run.policy_refresh': 0})
