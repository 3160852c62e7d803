"""The toy reach task of the learning checks (dreamer_tf/envs/toy.py)."""

import numpy as np
import pytest

from dreamer_tf.envs import make_env
from dreamer_tf.envs.toy import Reach, optimal_return, reference_returns, saturated_return


def episode(env, policy):
    out = env.reset()
    assert out['is_first'] and not out['is_last']
    total, steps = 0.0, 0
    while not out['is_last']:
        out = env.step(policy(out['vector']))
        assert not out['is_terminal']
        total += float(out['reward'])
        steps += 1
    return total, steps


def test_dynamics_and_rewards_by_hand():
    env = Reach(seed=0)
    out = env.reset()
    goal = float(out['vector'][1])
    np.testing.assert_allclose(out['vector'], [0.0, goal])
    out = env.step(np.array([0.5]))
    np.testing.assert_allclose(out['vector'], [0.1, goal], rtol=1e-6)
    assert out['reward'] == pytest.approx(1 - abs(0.1 - goal), abs=1e-6)
    for _ in range(9):
        out = env.step(np.array([3.0]))  # clipped to 1, then the line's end
    assert out['vector'][0] == pytest.approx(1.0)
    discrete = Reach('reach_discrete', seed=0)
    discrete.reset()
    assert discrete.step(0)['vector'][0] == pytest.approx(-0.2)
    assert discrete.step(np.array([0, 1, 0]))['vector'][0] == pytest.approx(-0.2)
    assert discrete.step(2)['vector'][0] == pytest.approx(0.0)


def test_reference_returns_by_hand():
    # Goal 0.5: positions 0.2, 0.4, 0.5 (x18); rewards 0.7, 0.9, then 1.
    assert optimal_return(0.5) == pytest.approx(0.7 + 0.9 + 18 * 1.0)
    # Always +1 from 0 towards goal 0.5: positions 0.2, 0.4, 0.6, 0.8, 1.0 (x16).
    assert saturated_return(0.5) == pytest.approx(0.7 + 0.9 + 0.9 + 0.7 + 16 * 0.5)
    refs = reference_returns()
    assert refs['optimal'] == pytest.approx(19.4, abs=0.01)
    assert refs['saturated'] == pytest.approx(1.4, abs=0.01)


def test_fixed_policies_score_their_reference_returns():
    env = make_env('toy_reach', seed=3)
    optimal = [episode(env, lambda obs: [np.clip((obs[1] - obs[0]) / 0.2, -1, 1)])
               for _ in range(300)]
    assert {steps for _, steps in optimal} == {20}
    assert np.mean([r for r, _ in optimal]) == pytest.approx(19.4, abs=0.1)
    saturated = [episode(env, lambda obs: [1.0])[0] for _ in range(3000)]
    assert np.mean(saturated) == pytest.approx(1.4, abs=0.6)  # 3 standard errors
    rng = np.random.default_rng(0)
    random = [episode(env, lambda obs: rng.uniform(-1, 1, 1))[0] for _ in range(3000)]
    assert np.mean(random) == pytest.approx(8.7, abs=0.4)


def test_goals_differ_across_resets_and_seeds_repeat():
    def goals(seed):
        env = Reach(seed=seed)
        return [float(env.reset()['vector'][1]) for _ in range(5)]

    assert goals(1) == goals(1)
    assert len(set(goals(1))) == 5
    assert goals(1) != goals(2)


def test_bad_input_is_clear():
    with pytest.raises(ValueError, match='toy_<task>'):
        make_env('toy_reacher')
    env = Reach()
    with pytest.raises(RuntimeError, match='reset'):
        env.step(np.zeros(1))
    env.reset()
    with pytest.raises(ValueError, match='one action value'):
        env.step(np.zeros(2))
    discrete = Reach('reach_discrete')
    discrete.reset()
    with pytest.raises(ValueError, match='outside'):
        discrete.step(3)
