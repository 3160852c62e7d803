"""PlaNet: the CEM planner (dreamer_tf/planner.py), 5-bit images and the planet preset."""

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.diagnostics.planning import planning_policy
from dreamer_tf.envs.base import ActSpace, Space
from dreamer_tf.heads import image_to_float
from dreamer_tf.planner import CEM, Planner
from dreamer_tf.world_model import Reconstruction, quantise
from dreamer_tf_export.policy import ExportError, ExportPolicy

IMAGE = {'image': Space((64, 64, 3), np.uint8)}


class Tracker:
    """A toy latent model whose state is the last action, s' = a, with a goal g kept in
    the state and the quadratic reward r(s') = -|s' - g|^2. The optimal sequence is
    a_t = clip(g, -1, 1) at every step of the horizon."""

    def img_step(self, state, action, seed):
        return {'deter': action, 'stoch': state['stoch']}

    def feat(self, state):
        return tf.concat([state['deter'], state['stoch']], -1)


def quadratic_reward(feat):
    position, goal = tf.split(feat, 2, -1)
    return -tf.reduce_sum(tf.square(position - goal), -1)


def test_cem_finds_the_optimal_action_sequence():
    planner = CEM(2, horizon=12, candidates=1000, iterations=10, top=100)
    # Env 1's first goal lies outside the action box: its optimum is the bound, 1.
    goals = np.array([[0.4, -0.7], [1.5, -0.1]], np.float32)
    start = {'deter': tf.zeros((2, 2)), 'stoch': tf.constant(goals)}
    optimum = np.repeat(np.clip(goals, -1, 1)[:, None], 12, 1)
    plan = tf.function(lambda seed: planner.plan(Tracker(), quadratic_reward, start, seed))
    for seed in range(3):
        mean, std = plan(tf.constant([seed, 0]))
        np.testing.assert_allclose(mean.numpy(), optimum, atol=0.06)
        assert np.all(std.numpy() < 0.2)
    act = tf.function(lambda seed: planner(Tracker(), quadratic_reward, start, seed))
    np.testing.assert_allclose(act(tf.constant([0, 1])).numpy(), optimum[:, 0], atol=0.06)


def test_cem_scores_discounted_rewards_plus_the_value_at_the_horizon():
    # Tracker: the state after action a is a, so the rewards are -(a_t - g)^2.
    planner = CEM(1, horizon=3, candidates=4, iterations=1, top=1)
    start = {'deter': tf.zeros((2, 1)), 'stoch': tf.constant([[0.5], [0.5]])}
    actions = tf.constant([[[0.0], [1.0], [0.5]], [[-1.0], [0.5], [0.0]]])
    value = lambda feat: 10.0 * feat[..., 0]  # 10 x the last action
    seed = tf.constant([0, 0])
    scores = planner.returns(Tracker(), quadratic_reward, start, actions, seed, value, 0.9)
    # -(0.25 + 0.9 * 0.25 + 0.81 * 0) + 0.729 * 5 and -(2.25 + 0 + 0.81 * 0.25) + 0.729 * 0
    np.testing.assert_allclose(scores.numpy(), [3.17, -2.4525], rtol=1e-6)
    # PlaNet's score: the plain sum of rewards.
    plain = planner.returns(Tracker(), quadratic_reward, start, actions, seed)
    np.testing.assert_allclose(plain.numpy(), [-0.5, -2.5], rtol=1e-6)


def test_cem_settings_are_checked():
    with pytest.raises(ValueError, match='top'):
        CEM(1, horizon=12, candidates=10, iterations=10, top=100)
    with pytest.raises(ValueError, match='horizon'):
        CEM(1, horizon=0, candidates=10, iterations=10, top=5)


def test_quantise_matches_planet_preprocessing():
    image = tf.constant(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1))
    x = image_to_float(quantise(image, 5, tf.constant([5, 6])), tf.float32).numpy()
    levels = np.floor(np.arange(256) / 8).reshape(1, 16, 16, 1)
    # planet tools/preprocess.py: floor(o / 8) / 32 + U(0, 1 / 32) - 0.5.
    noise = (x + 0.5) * 32 - levels
    assert np.all(noise >= 0) and np.all(noise < 1) and noise.std() > 0.2
    # planet's postprocess recovers the level.
    np.testing.assert_array_equal(np.floor((x + 0.5) * 32), levels)


def test_planet_preset_updates_the_model_and_plans_for_a_batch_of_envs():
    config = load_config(['planet', 'dmc_vision', 'debug'])
    assert config.behavior == 'cem' and config.image_bits == 5
    assert config.loss_scales.reward == 10.0 and config.kl.free == 3.0
    act_space = ActSpace(False, 2)
    agent = Agent(IMAGE, act_space, config)
    assert isinstance(agent.behavior, Planner) and agent.behavior.optimizers == {}
    assert isinstance(agent.wm.representation, Reconstruction)
    assert agent.policy_variables() == list(agent.wm.variables)
    with pytest.raises(ValueError, match='actor-critic agent'):
        planning_policy(agent, agent.behavior.cem)  # diagnose plan: PlaNet already plans
    before = [v.numpy().copy() for v in agent.wm.trainable_variables]
    for seed in range(2):
        metrics = agent.train(synthetic_batch(IMAGE, act_space, 2, 8, seed=seed))
    assert np.isfinite(metrics['recon_image_loss'].numpy())
    assert not any(k.startswith('actor') for k in metrics)
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, agent.wm.trainable_variables))
    batch = synthetic_batch(IMAGE, act_space, 3, 8)
    obs = {'image': batch['image'][:, 0], 'is_first': batch['is_first'][:, 0]}
    state = agent.initial_state(3)
    for _ in range(2):
        action, state = agent.policy(obs, state, explore=True)
        assert action.shape == (3, 2) and np.all(np.abs(action.numpy()) <= 1.0)
    # The whole plan for the batch of envs is one compiled function, traced once.
    assert agent._policy.experimental_get_tracing_count() == 1
    action, _ = agent.policy(obs, state, explore=False)
    assert np.all(np.abs(action.numpy()) <= 1.0)
    with pytest.raises(ExportError, match='PlaNet'):
        ExportPolicy(agent)


def test_planet_rejects_discrete_actions():
    with pytest.raises(ValueError, match='discrete'):
        Agent(
            {'vector': Space((4,), np.float32)}, ActSpace(True, 2), load_config(['planet', 'debug'])
        )
