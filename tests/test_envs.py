"""Tests for dreamer_tf.envs: adapters, wrappers and make_env."""

import pathlib
import subprocess
import sys

import dm_env
import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from dreamer_tf.envs import (
    ActionRepeat,
    ActSpace,
    Space,
    TaskError,
    TimeLimit,
    check_task,
    make_env,
)
from dreamer_tf.envs.base import transition
from dreamer_tf.envs.gym import Gym
from dreamer_tf.envs.image import resize
from dreamer_tf.envs.process import ProcessEnv

FLAGS = ('reward', 'is_first', 'is_last', 'is_terminal')


class FakeGym(gymnasium.Env):
    """Gymnasium env returning a fixed observation; terminates after `length`."""

    def __init__(self, observation_space, action_space, observation,
                 length=100, render_mode=None):
        self.observation_space = observation_space
        self.action_space = action_space
        self.observation = observation
        self.length = length
        self.render_mode = render_mode
        self.actions = []
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation, {}

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        return self.observation, 1.0, self.t >= self.length, False, {}

    def render(self):
        frame = np.zeros((40, 40, 3), np.uint8)
        frame[:, :20] = 200
        return frame


class Counter:
    """Interface-level env: reward equals the step count; ends after `length`."""

    obs_space = {'vector': Space((1,), np.float32)}
    act_space = ActSpace(True, 2)

    def __init__(self, length=10):
        self.length = length
        self.t = 0
        self.steps = 0

    def reset(self):
        self.t = 0
        return transition({'vector': np.zeros(1, np.float32)}, is_first=True)

    def step(self, action):
        self.t += 1
        self.steps += 1
        done = self.t >= self.length
        return transition(
            {'vector': np.full(1, self.t, np.float32)}, self.t,
            is_last=done, is_terminal=done)

    def close(self):
        pass


def box_env(action_space, **kwargs):
    return FakeGym(
        spaces.Box(-1, 1, (2,), np.float32), action_space,
        np.zeros(2, np.float32), **kwargs)


def check_transition(out, obs_space):
    assert set(out) == set(obs_space) | set(FLAGS)
    for key, space in obs_space.items():
        assert out[key].shape == space.shape
        assert out[key].dtype == space.dtype
    assert isinstance(out['reward'], np.float32)


def test_space_normalizes_shape_and_dtype():
    assert Space([5], 'float32') == Space((5,), np.float32)
    assert Space((5,), np.float32).dtype == np.dtype(np.float32)


def test_cartpole_spaces_and_transitions():
    env = make_env('gym_CartPole-v1', seed=1)
    assert env.obs_space == {'vector': Space((4,), np.float32)}
    assert env.act_space == ActSpace(discrete=True, n=2)
    first = env.reset()
    check_transition(first, env.obs_space)
    assert first['is_first'] and first['reward'] == 0
    assert not first['is_last'] and not first['is_terminal']
    out = env.step(1)
    check_transition(out, env.obs_space)
    assert not out['is_first'] and out['reward'] == 1
    env.close()


def test_discrete_action_int_and_one_hot_agree():
    envs = [make_env('gym_CartPole-v1', seed=3) for _ in range(2)]
    starts = [env.reset()['vector'] for env in envs]
    np.testing.assert_array_equal(starts[0], starts[1])
    by_index = envs[0].step(1)['vector']
    by_one_hot = envs[1].step(np.array([0.0, 1.0]))['vector']
    np.testing.assert_array_equal(by_index, by_one_hot)
    with pytest.raises(ValueError, match='outside'):
        envs[0].step(2)


def test_seed_makes_resets_reproducible():
    first = make_env('gym_CartPole-v1', seed=7).reset()['vector']
    again = make_env('gym_CartPole-v1', seed=7).reset()['vector']
    other = make_env('gym_CartPole-v1', seed=8).reset()['vector']
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize('task', ['gym_CartPole-v1', 'minatar_breakout'])
def test_termination_sets_is_terminal_and_blocks_steps(task):
    env = make_env(task, seed=0)
    env.reset()
    for _ in range(2000):
        out = env.step(0)
        if out['is_last']:
            break
    assert out['is_last'] and out['is_terminal']
    with pytest.raises(RuntimeError, match='reset'):
        env.step(0)
    assert env.reset()['is_first']


def test_pendulum_truncation_is_last_without_terminal():
    env = make_env('gym_Pendulum-v1', seed=0)
    assert env.obs_space == {'vector': Space((3,), np.float32)}
    assert env.act_space == ActSpace(discrete=False, n=1)
    env.reset()
    outs = [env.step(np.array([0.5])) for _ in range(200)]
    assert [out['is_last'] for out in outs] == [False] * 199 + [True]
    assert not any(out['is_terminal'] for out in outs)
    assert all(out['reward'] <= 0 for out in outs)


def test_continuous_actions_map_linearly_and_clip():
    low, high = np.array([0.0], np.float32), np.array([10.0], np.float32)
    fake = box_env(spaces.Box(low=low, high=high))
    env = Gym(fake)
    env.reset()
    for action, expected in [(-1, 0), (1, 10), (0, 5), (5, 10), (-3, 0)]:
        env.step(np.array([action], np.float32))
        np.testing.assert_allclose(fake.actions[-1], [expected])
    assert fake.actions[-1].dtype == np.float32
    with pytest.raises(ValueError, match='1 elements'):
        env.step(np.zeros(2))


def test_continuous_actions_need_finite_bounds():
    with pytest.raises(ValueError, match='finite'):
        Gym(box_env(spaces.Box(-np.inf, np.inf, (2,))))


def test_discrete_start_offset():
    fake = box_env(spaces.Discrete(3, start=-1))
    env = Gym(fake)
    env.reset()
    env.step(0)
    env.step(np.array([0, 0, 1]))
    assert fake.actions == [-1, 1]


def test_image_observations_and_resize():
    image = np.arange(32 * 48 * 3).reshape(32, 48, 3).astype(np.uint8)
    fake = FakeGym(
        spaces.Box(0, 255, (32, 48, 3), np.uint8), spaces.Discrete(2), image)
    env = Gym(fake)
    assert env.obs_space == {'image': Space((32, 48, 3), np.uint8)}
    np.testing.assert_array_equal(env.reset()['image'], image)
    small = Gym(fake, size=(16, 24))
    assert small.obs_space == {'image': Space((16, 24, 3), np.uint8)}
    check_transition(small.reset(), small.obs_space)


def test_resize_area_and_nearest():
    image = np.zeros((4, 4, 1), np.uint8)
    image[:2, :2] = 100
    np.testing.assert_array_equal(resize(image, (2, 2))[..., 0], [[100, 0], [0, 0]])
    image = np.arange(9, dtype=np.uint8).reshape(3, 3, 1)
    np.testing.assert_array_equal(resize(image, (2, 2))[..., 0], [[0, 2], [6, 8]])


def test_dict_observations_split_images_and_vectors():
    space = spaces.Dict({
        'vel': spaces.Box(-1, 1, (2,), np.float64),
        'cam': spaces.Box(0, 255, (8, 8, 3), np.uint8),
        'pos': spaces.Box(-1, 1, (1, 2), np.float32),
    })
    observation = {
        'vel': np.array([3.0, 4.0]),
        'cam': np.full((8, 8, 3), 9, np.uint8),
        'pos': np.array([[1.0, 2.0]], np.float32),
    }
    env = Gym(FakeGym(space, spaces.Discrete(2), observation))
    assert env.obs_space == {
        'cam': Space((8, 8, 3), np.uint8), 'vector': Space((4,), np.float32)}
    out = env.reset()
    check_transition(out, env.obs_space)
    np.testing.assert_array_equal(out['vector'], [1, 2, 3, 4])
    assert (out['cam'] == 9).all()


def test_pixels_render_replaces_vector_observations():
    fake = box_env(spaces.Discrete(2), render_mode='rgb_array')
    env = Gym(fake, size=(20, 20), pixels=True)
    assert env.obs_space == {'image': Space((20, 20, 3), np.uint8)}
    image = env.reset()['image']
    assert image[:, :10].min() == 200 and image[:, 10:].max() == 0
    with pytest.raises(ValueError, match='rgb_array'):
        Gym(box_env(spaces.Discrete(2)), size=(20, 20), pixels=True)


def test_unsupported_spaces_are_task_errors_naming_the_space():
    with pytest.raises(TaskError, match=r'Action space MultiBinary\(4\) is not supported'):
        Gym(box_env(spaces.MultiBinary(4)))
    with pytest.raises(TaskError, match=r'Action space MultiDiscrete\(\[3 2\]\) is not supported'):
        Gym(box_env(spaces.MultiDiscrete([3, 2])))
    text = spaces.Dict({'pos': spaces.Box(-1, 1, (2,)), 'name': spaces.Text(5)})
    with pytest.raises(TaskError, match=r"Text\(.*\) under key 'name' is not supported"):
        Gym(FakeGym(text, spaces.Discrete(2), None))


def test_action_repeat_sums_rewards_and_stops_at_is_last():
    inner = Counter(length=5)
    env = ActionRepeat(inner, 2)
    env.reset()
    assert env.step(0)['reward'] == 1 + 2
    assert env.step(0)['reward'] == 3 + 4
    last = env.step(0)
    assert last['is_last'] and last['reward'] == 5
    assert inner.steps == 5


def test_time_limit_truncates_without_terminal():
    env = TimeLimit(Counter(length=100), 3)
    for _ in range(2):
        assert env.reset()['is_first']
        outs = [env.step(0) for _ in range(3)]
        assert [out['is_last'] for out in outs] == [False, False, True]
        assert not outs[-1]['is_terminal']
    with pytest.raises(RuntimeError, match='reset'):
        env.step(0)


def test_time_limit_keeps_earlier_termination():
    env = TimeLimit(Counter(length=2), 5)
    env.reset()
    env.step(0)
    out = env.step(0)
    assert out['is_last'] and out['is_terminal']


def test_make_env_time_limit_counts_env_steps():
    env = make_env('gym_Pendulum-v1', action_repeat=3, time_limit=10)
    env.reset()
    lasts = [env.step(np.zeros(1))['is_last'] for _ in range(4)]
    assert lasts == [False, False, False, True]


def test_unknown_suite_lists_valid_suites():
    with pytest.raises(ValueError, match='gym, dmc') as info:
        make_env('foo_bar')
    assert 'dmc_walker_walk' in str(info.value)


def test_unknown_gym_id_reports_gymnasium_hint():
    with pytest.raises(ValueError, match='Did you mean: `CartPole`'):
        make_env('gym_CartPol-v1')


@pytest.mark.parametrize('task, message', [
    ('foo_bar', 'suite one of gym, dmc'),
    ('gym_CartPol-v1', 'Did you mean: `CartPole`'),
    ('dmc_cartpole_balanse', 'Did you mean: cartpole_balance'),
    ('atari_pongg', 'Did you mean pong'),
    ('minatar_breakot', 'Did you mean breakout'),
    ('crafter_rewards', 'crafter_reward, crafter_noreward'),
    ('toy_rech', 'reach_discrete'),
])
def test_check_task_names_what_is_valid(task, message):
    with pytest.raises(TaskError, match=message):
        check_task(task)


def test_check_task_accepts_a_task_of_every_suite():
    for task in ('gym_CartPole-v1', 'dmc_ball_in_cup_catch', 'atari_pong', 'minatar_breakout',
                 'crafter_noreward', 'toy_reach_discrete'):
        check_task(task)


def test_import_is_lazy():
    code = ('import sys, dreamer_tf.envs; '
            'print(sorted({"mujoco", "dm_control", "gymnasium"} & set(sys.modules)))')
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True,
        cwd=pathlib.Path(__file__).parents[1])
    assert result.stdout.strip() == '[]'


@pytest.mark.parametrize('name, expected', [
    ('ball_in_cup_catch', ('ball_in_cup', 'catch')),
    ('cartpole_balance', ('cartpole', 'balance')),
    ('cartpole_two_poles', ('cartpole', 'two_poles')),
    ('walker_walk', ('walker', 'walk')),
    ('finger_turn_easy', ('finger', 'turn_easy')),
    ('point_mass_easy', ('point_mass', 'easy')),
    ('reacher_easy', ('reacher', 'easy')),
    ('humanoid_CMU_run', ('humanoid_CMU', 'run')),
])
def test_dmc_task_names(name, expected):
    from dreamer_tf.envs.dmc import parse_task
    assert parse_task(name) == expected


def test_dmc_unknown_task_suggests_close_names():
    with pytest.raises(ValueError, match='cartpole_balance'):
        make_env('dmc_cartpole_balanse')


def test_dmc_proprio_episode_length_with_action_repeat():
    env = make_env('dmc_cartpole_balance', action_repeat=2, time_limit=1000)
    assert env.obs_space == {'vector': Space((5,), np.float32)}
    assert env.act_space == ActSpace(discrete=False, n=1)
    check_transition(env.reset(), env.obs_space)
    steps = 0
    while True:
        out = env.step(np.zeros(1))
        steps += 1
        if out['is_last']:
            break
    assert steps == 500
    assert not out['is_terminal']
    assert out['vector'].dtype == np.float32


def test_dmc_internal_repeat_matches_single_steps():
    from dreamer_tf.envs.dmc import DMC
    single = DMC('cartpole', 'swingup', seed=3)
    repeated = DMC('cartpole', 'swingup', seed=3, repeat=2)
    single.reset()
    repeated.reset()
    action = np.array([0.7])
    for _ in range(3):
        first, second = single.step(action), single.step(action)
        both = repeated.step(action)
        assert both['reward'] == pytest.approx(first['reward'] + second['reward'], rel=1e-6)
        np.testing.assert_allclose(both['vector'], second['vector'])


def test_dmc_restore_state_replays_the_same_future():
    from dreamer_tf.envs.dmc import DMC
    env = DMC('cartpole', 'swingup', seed=3, repeat=2)
    env.reset()
    env.step(np.array([0.3]))
    saved = env.save_state()
    futures = []
    for action in (0.9, -0.9, 0.9):
        futures.append([env.step(np.array([action])) for _ in range(4)])
        env.restore_state(saved)
    rewards = [[step['reward'] for step in future] for future in futures]
    assert rewards[0] == rewards[2] and rewards[0] != rewards[1]
    for first, third in zip(futures[0], futures[2]):
        np.testing.assert_array_equal(first['vector'], third['vector'])


def test_dmc_vision_image():
    # Rendering runs in a worker process: MuJoCo's GL context segfaults in a
    # process that has loaded TensorFlow (see dreamer_tf.envs.process).
    env = ProcessEnv(task='dmc_cartpole_balance', obs='vision', size=(64, 64))
    assert env.obs_space == {'image': Space((64, 64, 3), np.uint8)}
    first = env.reset()
    out = env.step(np.ones(1))
    for step in (first, out):
        check_transition(step, env.obs_space)
        assert step['image'].std() > 1
    env.close()
    assert not env.process.is_alive()


def test_process_env_reports_worker_errors():
    # A bad task arrives as the TaskError it is, with its one-line message.
    env = ProcessEnv(task='nosuite_foo')
    with pytest.raises(TaskError, match="^Unknown task 'nosuite_foo'"):
        _ = env.obs_space
    env.close()


def test_dmc_discount_zero_is_terminal(monkeypatch):
    from dreamer_tf.envs.dmc import DMC
    env = DMC('cartpole', 'balance')
    observation = env._env.reset().observation
    env.reset()
    monkeypatch.setattr(
        env._env, 'step', lambda action: dm_env.termination(0.5, observation))
    out = env.step(np.zeros(1))
    assert out['is_last'] and out['is_terminal'] and out['reward'] == 0.5


def test_render_worker_refuses_a_main_module_that_imports_tensorflow(tmp_path):
    # A spawned worker re-imports the main module; a top-level TensorFlow import
    # there would crash MuJoCo's GL in the worker, so it reports an error instead.
    script = tmp_path / 'main.py'
    script.write_text(
        'import sys, types\n'
        "sys.modules['tensorflow'] = types.ModuleType('tensorflow')  # as `import tensorflow`\n"
        'from dreamer_tf.envs.process import ProcessEnv\n'
        "if __name__ == '__main__':\n"
        "    env = ProcessEnv(task='dmc_cartpole_balance', obs='vision')\n"
        '    try:\n'
        '        env.obs_space\n'
        '    except RuntimeError as error:\n'
        '        print(error)\n'
        '    env.close()\n')
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        check=True, cwd=pathlib.Path(__file__).parents[1])
    assert 'Import TensorFlow' in result.stdout and 'main.py' in result.stdout
