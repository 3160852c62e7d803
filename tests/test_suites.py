"""Atari, MinAtar and Crafter with the presets' preprocessing, and envs stepped in lockstep."""

import os
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.env_throughput import throughput
from dreamer_tf.envs import ActSpace, Space, make_env
from dreamer_tf.envs.atari import Atari
from dreamer_tf.envs.crafter import Crafter, achievements, score
from dreamer_tf.envs.from_config import env_args
from dreamer_tf.envs.image import area_resize, resize
from dreamer_tf.envs.minatar import GAMES
from dreamer_tf.envs.parallel import BatchEnv, process_envs
from dreamer_tf.envs.process import ProcessEnv
from dreamer_tf.heads import Decoder, Encoder


def preset_env(blocks, **overrides):
    """The env a preset trains on, built as the training loop builds it."""
    config = load_config(blocks, overrides)
    return make_env(**env_args(config, seed=0))


# ---------------------------------------------------------------- images


def test_area_resize_averages_overlaps():
    # 3 -> 2 pixels: each output covers 1.5 inputs, the middle one split in half.
    image = np.array([0, 90, 180], np.uint8).reshape(1, 3, 1)
    out = area_resize(np.repeat(image, 2, 0), (2, 2))
    np.testing.assert_array_equal(out[0, :, 0], [30, 150])
    # Integer ratios agree with block averaging.
    image = np.random.default_rng(0).integers(0, 256, (128, 96, 3), np.uint8)
    np.testing.assert_array_equal(area_resize(image, (64, 48)), resize(image, (64, 48)))
    # An Atari frame keeps its mean brightness.
    frame = np.random.default_rng(1).integers(0, 256, (210, 160, 1), np.uint8)
    assert abs(area_resize(frame, (64, 64)).mean() - frame.mean()) < 0.5
    with pytest.raises(ValueError, match='only shrinks'):
        area_resize(frame, (256, 64))


# ---------------------------------------------------------------- Atari


class FakeALE:
    """Emulator stand-in: the screen shows 10 x the frame number; rewards 1 per frame."""

    def __init__(self, end=1000, life_lost_at=None):
        self.frame, self.end, self.life_lost_at, self.actions = 0, end, life_lost_at, []

    def act(self, action):
        self.actions.append(action)
        self.frame += 1
        return 1.0

    def getScreenGrayscale(self, out):
        out[:] = 10 * self.frame

    def game_over(self):
        return self.frame >= self.end

    def lives(self):
        return 2 if self.life_lost_at is None or self.frame < self.life_lost_at else 1

    def reset_game(self):
        self.frame = 0


def test_atari_repeats_actions_and_max_pools_last_two_frames():
    env = Atari('pong', noops=0, sticky=False)
    env._ale = FakeALE(end=6)
    assert (env.reset()['image'] == 0).all()
    out = env.step(3)
    # Frames 1-4 were played; the image is max(frame 3, frame 4) = 40; rewards summed.
    assert env._ale.frame == 4 and (out['image'] == 40).all() and out['reward'] == 4
    assert env._ale.actions == [env._actions[3]] * 4
    assert not out['is_last']
    # The game ends at frame 6: the step stops there and pools frames 5 and 6.
    out = env.step(0)
    assert env._ale.frame == 6 and (out['image'] == 60).all() and out['reward'] == 2
    assert out['is_last'] and out['is_terminal']
    with pytest.raises(RuntimeError, match='reset'):
        env.step(0)


@pytest.mark.parametrize('lives, last', [('unused', False), ('terminal', False), ('reset', True)])
def test_atari_life_loss_options(lives, last):
    env = Atari('pong', noops=0, lives=lives)
    env._ale = FakeALE(life_lost_at=2)
    env.reset()
    out = env.step(0)
    assert out['is_terminal'] == (lives != 'unused')
    assert out['is_last'] == last
    # A lost life ends the action repeat early, as in DreamerV3.
    assert env._ale.frame == (4 if lives == 'unused' else 2)


def test_atari_preset_preprocessing_on_the_real_emulator():
    env = preset_env(['dreamerv2', 'atari'])
    assert env.obs_space == {'image': Space((64, 64, 1), np.uint8)}
    assert env.act_space == ActSpace(True, 6)  # Pong's minimal set: V2's all_actions=False
    atari = env.env  # inside the 27000-step TimeLimit
    assert env._steps == 27000
    ale = atari._ale
    assert ale.getFloat('repeat_action_probability') == pytest.approx(0.25)
    first = env.reset()
    assert first['is_first'] and first['image'].dtype == np.uint8
    assert ale.getEpisodeFrameNumber() <= 30
    before = ale.getEpisodeFrameNumber()
    out = env.step(np.eye(6)[1])
    assert ale.getEpisodeFrameNumber() - before == 4
    assert out['image'].shape == (64, 64, 1) and not out['is_first']
    # 30 no-op starts: resets begin at different frames.
    starts = set()
    for _ in range(6):
        env.reset()
        starts.add(ale.getEpisodeFrameNumber())
    assert len(starts) > 1 and max(starts) <= 30


def test_atari_observation_is_resized_max_of_last_two_frames():
    env = Atari('breakout', noops=0, sticky=False, gray=False)
    env.reset()
    ale = env._ale
    saved = ale.cloneState()
    out = env.step(1)
    ale.restoreState(saved)
    frames = []
    for _ in range(4):
        ale.act(env._actions[1])
        frames.append(ale.getScreenRGB())
    expected = area_resize(np.maximum(frames[2], frames[3]), (64, 64))
    np.testing.assert_array_equal(out['image'], expected)
    assert out['image'].shape == (64, 64, 3)


def test_atari100k_preset_colour_minimal_actions_no_sticky():
    env = preset_env(['dreamerv3', 'atari100k'], task='atari_pong')
    assert env.obs_space == {'image': Space((64, 64, 3), np.uint8)}
    assert env.act_space == ActSpace(True, 6)
    assert env.env._ale.getFloat('repeat_action_probability') == 0.0


def test_atari_time_limit_truncates_without_terminal():
    env = make_env('atari_pong', action_repeat=4, time_limit=40)
    env.reset()
    outs = [env.step(0) for _ in range(10)]
    assert [o['is_last'] for o in outs] == [False] * 9 + [True]
    assert not outs[-1]['is_terminal']


def test_atari_unknown_game_lists_valid_games():
    with pytest.raises(ValueError, match='Did you mean pong') as info:
        make_env('atari_pongg')
    assert 'space_invaders' in str(info.value) and 'ms_pacman' in str(info.value)
    with pytest.raises(ValueError, match='lives'):
        make_env('atari_pong', lives='sometimes')


# ---------------------------------------------------------------- MinAtar


CHANNELS = {'asterix': 4, 'breakout': 4, 'freeway': 7, 'seaquest': 10, 'space_invaders': 6}


@pytest.mark.parametrize('game', GAMES)
def test_minatar_games_match_the_raw_game(game):
    import minatar

    env = make_env(f'minatar_{game}', seed=5, actions='minimal')
    raw = minatar.Environment(game)
    raw.seed(5)
    assert env.obs_space == {'image': Space((10, 10, CHANNELS[game]), np.uint8)}
    assert env.act_space == ActSpace(True, len(raw.minimal_action_set()))
    first = env.reset()
    raw.reset()
    assert first['is_first'] and set(np.unique(first['image'])) <= {0, 255}
    np.testing.assert_array_equal(first['image'] > 0, raw.state())
    rng = np.random.default_rng(0)
    for _ in range(50):
        index = int(rng.integers(env.act_space.n))
        out = env.step(index)
        # One env step is one game step (the preset has no action repeat).
        reward, terminal = raw.act(raw.minimal_action_set()[index])
        np.testing.assert_array_equal(out['image'] > 0, raw.state())
        assert out['reward'] == reward and out['is_last'] == terminal
        if terminal:
            assert out['is_terminal']
            assert env.reset()['is_first']
            raw.reset()


def test_minatar_preset_gives_the_grid_to_a_stride_1_cnn():
    env = preset_env(['dreamerv2', 'minatar'], task='minatar_seaquest')
    assert env.obs_space == {'image': Space((10, 10, 10), np.uint8)}
    assert env.act_space == ActSpace(True, 6)
    config = load_config(['dreamerv2', 'minatar'])
    encoder = Encoder(env.obs_space, **config.encoder)
    # Three unpadded 3x3 convolutions of depths 16, 32, 64: 10 -> 8 -> 6 -> 4.
    assert [c.w.shape.as_list() for c in encoder.convs] == [
        [3, 3, 10, 16], [3, 3, 16, 32], [3, 3, 32, 64]]
    assert encoder.out_size == 4 * 4 * 64
    image = np.stack([env.reset()['image']] * 2)[:, None]  # [B=2, T=1, 10, 10, 10]
    assert encoder({'image': image}).shape == (2, 1, 1024)
    decoder = Decoder(env.obs_space, 7, **config.decoder)
    assert decoder.start == (4, 4, 64)
    assert decoder(tf.zeros((2, 1, 7)))['image'].mean().shape == (2, 1, 10, 10, 10)
    # The flat-vector option for MLP encoders.
    flat = preset_env(['dreamerv2', 'minatar'], task='minatar_seaquest', **{'env.flatten': True})
    assert flat.obs_space == {'vector': Space((1000,), np.float32)}
    out = flat.reset()
    assert set(np.unique(out['vector'])) <= {0.0, 1.0} and out['vector'].sum() > 0


def test_minatar_preset_decays_epsilon_greedy_exploration():
    """RajGhugare19/dreamerv2: epsilon = max(0.05, 0.4 - t / 7000) at env step t."""
    config = load_config(['dreamerv2', 'minatar', 'debug'])
    agent = Agent({'image': Space((10, 10, 4), np.uint8)}, ActSpace(True, 3), config)
    assert agent.exploration(0) == pytest.approx(0.4)
    assert agent.exploration(700) == pytest.approx(0.3)
    assert agent.exploration(10**6) == pytest.approx(0.05)
    # Epsilon-greedy replaces a row's action by a uniform one with probability epsilon.
    action = tf.one_hot(tf.zeros(3000, tf.int32), 3)
    for epsilon in (0.0, 0.4, 1.0):
        out = agent._explore(action, tf.constant(epsilon), tf.constant([1, 2])).numpy()
        assert np.all(out.sum(-1) == 1)
        # A uniform pick keeps class 0 one time in three.
        assert np.mean(out.argmax(-1) != 0) == pytest.approx(epsilon * 2 / 3, abs=0.03)


def test_minatar_unknown_game_lists_games():
    with pytest.raises(ValueError, match='Did you mean breakout') as info:
        make_env('minatar_breakot')
    assert 'space_invaders' in str(info.value)


# ---------------------------------------------------------------- Crafter


def test_crafter_preset_images_actions_and_achievements():
    env = preset_env(['dreamerv3', 'crafter'])
    assert env.obs_space == {'image': Space((64, 64, 3), np.uint8)}
    assert env.act_space == ActSpace(True, 17)
    first = env.reset()
    names = [f'log_achievement_{name}' for name in achievements()]
    assert len(names) == 22 and all(first[k] == 0 for k in names)
    assert first['is_first'] and first['image'].shape == (64, 64, 3)
    rng = np.random.default_rng(0)
    steps = 0
    for _ in range(300):
        out = env.step(int(rng.integers(17)))
        steps += 1
        assert out['image'].dtype == np.uint8 and not out['is_first']
        if out['is_last']:
            break
    assert env._env._step == steps  # one game step per env step: no action repeat
    assert set(names) <= set(out) and {float(out[k]) for k in names} <= {0.0, 1.0}
    assert sum(out[k] for k in names) > 0  # random play unlocks e.g. wake_up or collect_sapling
    assert env.reset()['is_first'] and env._env._step == 0


def test_crafter_noreward_hides_rewards_except_in_eval():
    actions = np.random.default_rng(1).integers(17, size=200)

    def rewards(task, mode):
        env = Crafter(task, seed=3, mode=mode)
        env.reset()
        out = []
        for action in actions:
            step = env.step(int(action))
            out.append(step['reward'])
            if step['is_last']:
                break
        return out

    with_reward = rewards('reward', 'train')
    assert any(with_reward)
    assert not any(rewards('noreward', 'train'))
    assert rewards('noreward', 'eval') == with_reward


def test_crafter_score_and_errors():
    assert score([1.0] * 22) == pytest.approx(100.0)
    assert score([0.0] * 22) == 0.0
    # exp(mean(ln(1 + [100, 0]))) - 1 = sqrt(101) - 1
    assert score([1.0, 0.0]) == pytest.approx(101**0.5 - 1)
    with pytest.raises(ValueError, match='crafter_reward, crafter_noreward'):
        make_env('crafter_rewards')


# ---------------------------------------------------------------- parallel envs


def test_worker_envs_match_in_process_envs():
    actions = np.random.default_rng(0).integers(3, size=(40, 2))
    batch = process_envs(2, seed=3, task='minatar_breakout')
    local = BatchEnv([make_env('minatar_breakout', seed=3 + i) for i in range(2)])
    try:
        for a, b in zip(batch.reset(), local.reset()):
            np.testing.assert_array_equal(a['image'], b['image'])
        for step in actions:
            outs, expected = batch.step(list(step)), local.step(list(step))
            for a, b in zip(outs, expected):
                np.testing.assert_array_equal(a['image'], b['image'])
                assert a['reward'] == b['reward'] and a['is_last'] == b['is_last']
            ended = [i for i, out in enumerate(outs) if out['is_last']]
            if ended:
                assert [o['is_first'] for o in batch.reset(ended)] == [True] * len(ended)
                local.reset(ended)
        # Stepping a subset leaves the others where they are.
        only = batch.step([0], indices=[1])
        assert len(only) == 1
    finally:
        batch.close()
    assert not any(env.process.is_alive() for env in batch.envs)


def test_batch_env_rejects_mixed_spaces_and_reports_worker_errors():
    with pytest.raises(ValueError, match='identical envs'):
        BatchEnv([make_env('minatar_breakout'), make_env('minatar_seaquest')])
    with pytest.raises(ValueError, match='3 actions for 2 envs'):
        BatchEnv([make_env('minatar_breakout')] * 2).step([0, 0, 0])
    env = ProcessEnv(task='minatar_breakout')
    batch = BatchEnv([env])
    try:
        batch.reset()
        with pytest.raises(RuntimeError, match='outside'):
            batch.step([7])
    finally:
        batch.close()


def test_killed_or_hung_worker_is_restarted_with_a_new_episode():
    batch = process_envs(2, seed=3, timeout=3, task='minatar_breakout')
    try:
        batch.reset()
        batch.step([0, 0])
        old = batch.envs[1].process.pid
        os.kill(old, signal.SIGKILL)
        outs = batch.step([0, 0])
        assert batch.restarted == [1] and batch.envs[1].process.pid != old
        # The restarted env starts an episode; the other one carries on.
        assert outs[1]['is_first'] and not outs[0]['is_first']
        outs = batch.step([0, 0])
        assert batch.restarted == [] and not any(out['is_first'] for out in outs)
        # A worker that stops answering is restarted after its timeout.
        os.kill(batch.envs[0].process.pid, signal.SIGSTOP)
        start = time.monotonic()
        outs = batch.step([0, 0])
        assert batch.restarted == [0] and outs[0]['is_first']
        assert 3 <= time.monotonic() - start < 60
    finally:
        batch.close()


def test_a_worker_that_keeps_failing_is_given_up():
    batch = process_envs(1, seed=0, timeout=3, task='minatar_breakout')
    batch.max_restarts = 0
    try:
        batch.reset()
        os.kill(batch.envs[0].process.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match='failed 1 times in a row.*died'):
            batch.step([0])
    finally:
        batch.close()


def test_throughput_counts_env_steps_and_policy_time():
    calls = []

    def slow_policy(envs):
        def act(obs):
            calls.append(len(obs))
            time.sleep(0.01)
            return [0] * len(obs)

        return act

    rate, acting = throughput(2, 40, policy=slow_policy, task='atari_pong', action_repeat=4)
    # One warm-up call, then 20 lockstep steps of 2 envs: 160 env steps at most ~100/s.
    assert calls == [2] * 21 and acting == pytest.approx(0.01, rel=0.5)
    assert 0 < rate < 2 * 4 / 0.01
