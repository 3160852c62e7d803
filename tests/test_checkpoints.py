"""Checkpoints written in an earlier layout of the agent restore into today's agent."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.envs.base import ActSpace, Space
from dreamer_tf.run import checkpoint as checkpoints

LEGACY = Path(__file__).resolve().parent / 'data' / 'legacy_checkpoints'
EXPECTED = json.loads((LEGACY / 'expected.json').read_text())
VECTOR = {'vector': Space((5,), np.float32)}


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_a_checkpoint_from_before_components_restores_and_trains_on(name, tmp_path):
    case = EXPECTED[name]
    act_space = ActSpace(case['discrete'], 3)
    agent = Agent(VECTOR, act_space, load_config(case['blocks'], case['overrides']))
    directory = shutil.copytree(LEGACY / name, tmp_path / name)
    # Today's layout alone does not fit these files: the legacy view is what restores them.
    with pytest.raises((AssertionError, ValueError)):
        tf.train.Checkpoint(agent=Agent(VECTOR, act_space, agent.config)).restore(
            str(directory / 'ckpt-1')).assert_existing_objects_matched()
    assert checkpoints.restore({'agent': agent}, directory, partial=True) is not None
    # Optimiser moments included: the next update and the policy continue exactly.
    data = synthetic_batch(VECTOR, act_space, 2, 8, seed=2)
    metrics = agent.update(data, tf.constant([2, 7], tf.int64))
    assert float(metrics['model_loss']) == pytest.approx(case['model_loss'], rel=1e-6)
    obs = {k: v[:, 0] for k, v in data.items() if k in VECTOR or k == 'is_first'}
    action, _ = agent.policy_step(obs, agent.initial_state(2), tf.constant([1, 2], tf.int64),
                                  False)
    np.testing.assert_allclose(action.numpy(), case['action'], atol=1e-6)


def test_todays_layout_restores_without_the_legacy_view(tmp_path):
    config = load_config(['dreamerv3', 'gym', 'debug'])
    agent = Agent(VECTOR, ActSpace(True, 3), config)
    path = tf.train.Checkpoint(agent=agent).save(str(tmp_path / 'ckpt'))
    objects = {'agent': agent}
    assert checkpoints.as_saved(objects, path) is objects
