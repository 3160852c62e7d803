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
from dreamer_tf.cli import diagnose as diagnose_cli
from dreamer_tf.cli import eval as eval_cli
from dreamer_tf.config import ConfigError, load_config
from dreamer_tf.diagnostics.value_trace import return_to_go
from dreamer_tf.envs import TaskError
from dreamer_tf.envs.crafter import achievements as crafter_achievements
from dreamer_tf.reproduce.scores import crafter_score, crafter_success_rates
from dreamer_tf.run.checkpoint import CheckpointError
from dreamer_tf.run.collect import episode_logs, evaluate, replay_step
from dreamer_tf.run.logger import EpisodeRecords, Progress
from dreamer_tf.run.loop import Counters, suite_metrics, train
from dreamer_tf.run.restore import load_run
from dreamer_tf.run.schedule import check_schedule, schedule_count, scheduled_updates
from dreamer_tf.run.video import to_rgb, write_video

# Training runs and commands, end to end (`-m "not slow and not integration"`: unit tests).
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
eval_main = eval_cli.main
diagnose_main = diagnose_cli.main
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


def stored_lengths(logdir):
    """Steps of each episode file in the run's replay, read from the file names."""
    return [int(path.stem.rsplit('-', 1)[1]) for path in (logdir / 'replay').glob('*.npz')]


def test_train_resume_continues_counters_and_weights(tmp_path):
    agent, counters = train(tiny_config(tmp_path))
    assert counters.env_steps.numpy() >= 160
    assert counters.updates.numpy() > 0
    records = read_jsonl(tmp_path / 'metrics.jsonl')
    assert any('model_loss' in r for r in records) and any('eval_return' in r for r in records)
    assert (tmp_path / 'config.yaml').exists()
    assert list(tmp_path.glob('events.out.tfevents*'))
    # Every collected step is in the replay: the stop stored the episode in progress.
    lengths = stored_lengths(tmp_path)
    assert sum(lengths) - len(lengths) == counters.policy_steps.numpy()  # One reset step each.

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
    # Evaluations keep the run's schedule (prefill 64, every 80) across the resume at 160.
    evals = [r['step'] for r in read_jsonl(tmp_path / 'metrics.jsonl') if 'eval_return' in r]
    assert evals == [64, 144, 224]

    # `diagnose trace` traces a vector-observation episode; eval says why it cannot film one.
    diagnose_main(['trace', '--logdir', str(tmp_path), '--out', str(tmp_path / 't.npz'),
                   '--horizon', '20', '--policy', 'mode', '--json', str(tmp_path / 'trace.json')])
    episode = json.loads((tmp_path / 'trace.json').read_text())['episode']
    with np.load(tmp_path / 't.npz') as trace:
        trace = dict(trace)
    assert trace['vector'].shape == (episode['length'] + 1, 4)
    assert trace['reward'].sum() == pytest.approx(episode['return'])
    # Its model readings are those of the states the deterministic policy filtered.
    agent, config, envs, _ = load_run(tmp_path, overrides={})
    envs.close()
    state, values, rewards = agent.initial_state(1), [], []
    for t in range(len(trace['reward'])):
        obs = {'vector': trace['vector'][t:t + 1], 'is_first': trace['is_first'][t:t + 1]}
        _, state = agent.policy(obs, state, explore=False)
        feat = agent.wm.rssm.feat(state[0])
        values.append(agent.behavior.critic(feat).mean().numpy()[0])
        rewards.append(agent.wm.reward(feat).mean().numpy()[0])
    np.testing.assert_allclose(trace['model_value'], values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(trace['model_reward'], rewards, rtol=1e-5, atol=1e-5)
    gamma = config.imag.discount
    expected = sum(gamma**k * r for k, r in enumerate(trace['reward'][1:]))
    assert trace['return_to_go'][0] == pytest.approx(expected, rel=1e-5)
    assert trace['return_to_go'][-1] == 0
    # CartPole ended by falling: nothing to bootstrap from, nothing to imagine.
    assert trace['is_terminal'][-1]
    np.testing.assert_array_equal(trace['bootstrapped_return'], trace['return_to_go'])
    assert trace['imagined_return'][-1] == 0 and np.all(np.isfinite(trace['imagined_return']))
    with pytest.raises(SystemExit, match='a video needs exactly one'):
        eval_main(['--logdir', str(tmp_path), '--video', str(tmp_path / 'v.gif')])
    with pytest.raises(SystemExit) as error:
        diagnose_main(['trace', '--logdir', str(tmp_path), '--out', str(tmp_path / 'u.npz'),
                       '--samples', '0'])
    assert error.value.code == 2 and not (tmp_path / 'u.npz').exists()


def test_schedule_counts_fixed_points():
    # Points 100, 300, 500, ... (start 100, every 200); every 0 is no schedule.
    assert [schedule_count(step, 100, 200) for step in (0, 99, 100, 299, 300, 700)] == [
        0, 0, 1, 1, 2, 4]
    assert schedule_count(10_000, 0, 0) == 0


def test_update_schedules():
    load = lambda *blocks, **o: load_config(list(blocks), o).run
    # DreamerV2 on dm_control: 100 pretraining updates plus the first update at the end
    # of prefill (danijar/dreamerv2 train.py), then one every 5 policy steps.
    v2 = load('dreamerv2', 'dmc_proprio')
    assert (v2.pretrain, v2.train_every, v2.train_steps) == (100, 5, 1)
    assert [scheduled_updates(v2, s) for s in (0, 4, 5, 12)] == [101, 101, 102, 103]
    # DreamerV1: 100 updates every 500 policy steps, the first 100 at once.
    v1 = load('dreamerv1', 'dmc_proprio')
    assert [scheduled_updates(v1, s) for s in (0, 499, 500)] == [100, 100, 200]
    # DreamerV3: train ratio 512 over batches of 16 x 64 is one update per 2 policy steps.
    v3 = load('dreamerv3', 'dmc_proprio')
    assert [scheduled_updates(v3, s) for s in (0, 1, 2, 9)] == [0, 0, 1, 4]
    with pytest.raises(ValueError, match='run.train_every'):
        check_schedule(load('dreamerv1', **{'run.train_every': 0}))
    with pytest.raises(ValueError, match='run.pretrain'):
        check_schedule(load('dreamerv3', **{'run.pretrain': -1}))


def test_an_unknown_evaluation_policy_fails_before_training(tmp_path):
    config = load_config(['dreamerv3', 'gym', 'debug'],
                         {'run.eval_policy': 'greedy', 'logdir': str(tmp_path / 'run')})
    with pytest.raises(ValueError, match=r"run.eval_policy must be one of "
                                         r"\('mode', 'sample', 'sample_latent'\)"):
        train(config)
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('sig, mode', [(signal.SIGKILL, 'sync'), (signal.SIGTERM, 'sync'),
                                       (signal.SIGTERM, 'async')])
def test_resume_after_kill(tmp_path, sig, mode):
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
        '--run.mode',
        mode,
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
    with pytest.raises(CheckpointError, match='no checkpoint in .* restores'):
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


def test_unknown_task_fails_before_the_run_directory_or_workers(tmp_path):
    with pytest.raises(TaskError, match='suite'):
        train(tiny_config(tmp_path / 'run', task='atary_Pong'))
    # Two envs would run in worker processes, whose errors arrive wrapped.
    with pytest.raises(TaskError, match='Did you mean: cartpole_balance'):
        train(tiny_config(tmp_path / 'run', task='dmc_cartpole_blance', **{'env.envs': 2}))
    assert not (tmp_path / 'run').exists()


def test_a_bad_seed_precision_or_logdir_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match='seed must be >= 0, got -1'):
        train(tiny_config(tmp_path / 'run', seed=-1))
    with pytest.raises(ConfigError, match="precision must be one of .* got 'fp8'"):
        train(tiny_config(tmp_path / 'run', precision='fp8'))
    assert not (tmp_path / 'run').exists()
    file = tmp_path / 'file'
    file.write_text('kept')
    with pytest.raises(ConfigError, match='is a file'):
        train(tiny_config(file))
    assert file.read_text() == 'kept'


def test_cli_reports_a_task_error_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / 'scripts' / 'train.py'), '--configs', 'dreamerv3', 'debug',
         '--task', 'gym_CartPol-v1', '--logdir', str(tmp_path / 'run')],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "error: Unknown gymnasium env id 'CartPol-v1'" in result.stderr
    assert 'Traceback' not in result.stderr and not (tmp_path / 'run').exists()


def test_log_keys_stay_out_of_replay_and_become_episode_metrics():
    step = {'image': np.zeros((2, 2, 1), np.uint8), 'reward': 1.0, 'is_first': False,
            'is_last': True, 'is_terminal': False, 'log_achievement_collect_wood': 1.0,
            'log_achievement_eat_cow': 0.0}
    assert set(replay_step(step, np.ones(3))) == {
        'image', 'reward', 'is_first', 'is_last', 'is_terminal', 'action'}
    assert replay_step(step, np.ones(3), 7)['meta_policy_version'] == 7
    logs = episode_logs(step)
    assert logs == {'achievement_collect_wood': 1.0, 'achievement_eat_cow': 0.0}
    # Success rates 100% and 0%: Crafter's score is sqrt(101) - 1.
    assert suite_metrics('crafter_reward', logs)['crafter_score'] == pytest.approx(101**0.5 - 1)
    assert suite_metrics('atari_pong', logs) == {}


def gif_size(path):
    """Width and height of an animated GIF (frame counts are not kept: Pillow merges
    identical neighbouring frames)."""
    from PIL import Image

    with Image.open(path) as gif:
        assert gif.n_frames > 1
        return gif.size


def test_parallel_envs_train_and_eval_script(tmp_path):
    # Two Atari envs in worker processes, 20-step episodes, an evaluation with videos.
    config = load_config(['dreamerv3', 'atari', 'debug'], {
        'run.steps': 240, 'run.prefill': 80, 'run.train_ratio': 2.0, 'run.eval_every': 1000,
        'run.video_every': 1, 'run.log_every': 80, 'env.envs': 2, 'env.time_limit': 80,
        'logdir': str(tmp_path), 'task': 'atari_pong',
    })
    _, counters = train(config)
    # Each lockstep step adds 2 envs x action repeat 4 env steps.
    assert counters.env_steps.numpy() == 240 and counters.policy_steps.numpy() == 60
    assert counters.episodes.numpy() == 2 and counters.updates.numpy() > 0
    # Per env: a finished episode (reset + 20 steps) and, stored at the stop, the reset and
    # 10 steps of the next.
    assert sorted(stored_lengths(tmp_path)) == [11, 11, 21, 21]
    # One record per training episode, ending when the counters pass its last step.
    records = read_jsonl(tmp_path / 'stats.jsonl')
    # Both 80-step episodes end at the 20th lockstep step: 2 envs x 20 x 4 = 160 env steps.
    assert [(r['length'], r['step']) for r in records] == [(80, 160), (80, 160)]
    assert gif_size(tmp_path / 'videos' / 'eval_80.gif') == (64, 64)
    assert gif_size(tmp_path / 'videos' / 'dream_80.gif') == (3 * 64, 64)
    # The same GIFs in TensorBoard's image dashboard (width, height, encoded bytes).
    summaries = {}
    for events in tmp_path.glob('events.out.tfevents.*'):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag.startswith('video/'):
                    summaries[value.tag] = tf.make_ndarray(value.tensor)
    assert summaries['video/eval'][:2].tolist() == [b'64', b'64']
    assert summaries['video/dream'][:2].tolist() == [b'192', b'64']
    assert summaries['video/eval'][2] == (tmp_path / 'videos' / 'eval_80.gif').read_bytes()

    eval_main([
        '--logdir', str(tmp_path), '--episodes', '3', '--envs', '2',
        '--video', str(tmp_path / 'episode.gif'), '--dream', str(tmp_path / 'dream.gif'),
        '--dream_length', '12', '--json', str(tmp_path / 'eval.json'),
    ])
    diagnose_main(['trace', '--logdir', str(tmp_path), '--out', str(tmp_path / 'trace.npz'),
                   '--policy', 'mode', '--json', str(tmp_path / 'trace.json')])
    results = json.loads((tmp_path / 'eval.json').read_text())
    assert results['mode'] == 'sampled' and results['checkpoint'].endswith('ckpt-1')  # V3's policy
    assert [r['length'] for r in results['episodes']] == [80] * 3
    # The trace: the reset, then one entry per policy step (80 env steps, action repeat 4).
    with np.load(tmp_path / 'trace.npz') as trace:
        assert set(trace) == {'image', 'action', 'reward', 'is_first', 'is_last', 'is_terminal',
                              'model_reward', 'model_value', 'return_to_go',
                              'bootstrapped_return', 'imagined_return'}
        assert trace['model_value'].shape == trace['imagined_return'].shape == (21,)
        # A time limit, not a terminal step: the critic's last value stands in for what follows.
        assert not trace['is_terminal'][-1]
        gamma = config.imag.discount
        np.testing.assert_allclose(
            trace['bootstrapped_return'],
            return_to_go(trace['reward'], gamma, bootstrap=trace['model_value'][-1]),
            rtol=1e-6,
        )
        assert trace['image'].dtype == np.uint8 and trace['image'].shape[:1] == (21,)
        assert trace['action'].shape == (21, 18) and not trace['action'][0].any()
        assert trace['is_first'].tolist() == [True] + [False] * 20 and trace['is_last'][-1]
        traced = json.loads((tmp_path / 'trace.json').read_text())['episode']
        assert trace['reward'].sum() == pytest.approx(traced['return'])
    assert gif_size(tmp_path / 'episode.gif') == (64, 64)
    assert gif_size(tmp_path / 'dream.gif') == (3 * 64, 64)


@pytest.mark.parametrize('flags, message', [
    (['--episodes', '0'], '--episodes and --envs must be >= 1'),
    (['--dream_context', '50', '--dream_length', '50'], '0 < --dream_context < --dream_length'),
    (['--policy', 'random', '--dream', 'dream.gif'], '--policy random uses no model'),
    (['--policy', 'plan'], "invalid choice: 'plan'"),
])
def test_eval_script_rejects_bad_flags_before_loading(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit):
        eval_cli.parse(['--logdir', str(tmp_path), *flags])
    assert message in capsys.readouterr().err


def test_eval_script_names_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(SystemExit, match='has no config.yaml'):
        eval_main(['--logdir', str(tmp_path)])


def test_eval_script_plays_the_uniform_random_baseline_without_a_checkpoint(tmp_path, capsys):
    from dreamer_tf.envs import make_env

    # A run directory holding only its config: the baseline needs no model.
    config = load_config(['dreamerv3', 'dmc_proprio', 'debug'], {
        'task': 'dmc_cartpole_balance', 'logdir': str(tmp_path), 'env.time_limit': 40,
        'seed': 3,
    })
    config.save(tmp_path / 'config.yaml')
    eval_main(['--logdir', str(tmp_path), '--policy', 'random', '--episodes', '3',
               '--json', str(tmp_path / 'random.json')])
    assert '3 uniform-random episodes: return' in capsys.readouterr().out
    results = json.loads((tmp_path / 'random.json').read_text())
    assert results['mode'] == 'uniform-random' and results['checkpoint'] is None
    assert [r['length'] for r in results['episodes']] == [40] * 3
    # The same episodes by hand: prefill's uniform actions, drawn from a generator seeded
    # like the eval env (the run's seed + 20000), at the suite's action repeat 2.
    rng = np.random.default_rng(20_003)
    env = make_env('dmc_cartpole_balance', seed=20_003, action_repeat=2, time_limit=40)
    expected = []
    for _ in range(3):
        env.reset()
        total, last = 0.0, False
        while not last:
            out = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
            total, last = total + out['reward'], out['is_last']
        expected.append(total)
    assert [r['return'] for r in results['episodes']] == pytest.approx(expected, rel=1e-6)
    assert len(set(expected)) == 3


# Each preset with the tiny `debug` networks; short time limits keep episodes (and the
# evaluations) within a few hundred steps.
PRESETS = {
    'atari': (['dreamerv3', 'atari', 'debug'], {'env.time_limit': 200, 'run.train_ratio': 4.0}),
    'atari100k': (
        ['dreamerv3', 'atari100k', 'debug'], {'env.time_limit': 200, 'run.train_ratio': 4.0}),
    'minatar': (['dreamerv2', 'minatar', 'debug'], {'env.time_limit': 100}),
    'crafter': (['dreamerv3', 'crafter', 'debug'], {'env.time_limit': 100, 'run.train_ratio': 4.0}),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', PRESETS)
def test_preset_short_run_train_resume_eval(tmp_path, name):
    blocks, extra = PRESETS[name]
    overrides = {'run.steps': 400, 'run.prefill': 100, 'run.eval_every': 200,
                 'run.log_every': 100, 'logdir': str(tmp_path), **extra}
    _, counters = train(load_config(blocks, overrides))
    assert counters.env_steps.numpy() >= 400 and counters.updates.numpy() > 0
    records = read_jsonl(tmp_path / 'metrics.jsonl')
    assert any('eval_return' in r for r in records) and any('model_loss' in r for r in records)
    if name == 'crafter':
        assert any('crafter_score' in r and 'achievement_collect_wood' in r for r in records)
        # The per-episode records give the Crafter score the reproduction report uses.
        episodes = read_jsonl(tmp_path / 'stats.jsonl')
        rates, count, _ = crafter_success_rates(episodes, crafter_achievements())
        assert count == len(episodes) > 0 and 0 <= crafter_score(rates) <= 100
    _, resumed = train(load_config(blocks, {**overrides, 'run.steps': 600}))
    assert resumed.env_steps.numpy() >= 600 and resumed.updates.numpy() > counters.updates.numpy()

    agent, config, envs, path = load_run(tmp_path, envs=2)
    try:
        results = evaluate(agent, envs, 2)
    finally:
        envs.close()
    assert path.endswith('ckpt-2') and len(results) == 2
    assert all(0 < r['length'] <= config.env.time_limit for r in results)


def test_write_video_is_atomic_and_checks_its_input(tmp_path, monkeypatch):
    frames = np.zeros((4, 8, 8, 1), np.uint8)
    frames[:, :, :4] = np.arange(4)[:, None, None, None] * 60
    path = write_video(frames, tmp_path / 'sub' / 'grey.gif')
    assert gif_size(path) == (8, 8)
    assert sorted(p.name for p in path.parent.iterdir()) == ['grey.gif']
    with pytest.raises(ValueError, match='.gif or .mp4'):
        write_video(frames, tmp_path / 'clip.avi')
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', None)  # as if not installed
    with pytest.raises(RuntimeError, match='pip install imageio-ffmpeg'):
        write_video(frames, tmp_path / 'clip.mp4')
    with pytest.raises(ValueError, match=r'\[T, H, W, C\]'):
        write_video(frames[:0], tmp_path / 'empty.gif')
    assert not (tmp_path / 'empty.gif').exists()
    # MinAtar-style object channels get one colour each.
    channels = np.zeros((1, 2, 2, 4), np.uint8)
    channels[0, 0, 0, 1] = 255
    rgb = to_rgb(channels)
    assert rgb.shape == (1, 2, 2, 3) and rgb[0, 0, 0].max() > 0 and rgb[0, 1, 1].max() == 0


def test_videos_need_an_image_observation(tmp_path):
    config = tiny_config(tmp_path, **{'run.video_every': 100})
    with pytest.raises(ValueError, match='image observation'):
        train(config)


def test_episode_records_drop_what_a_resume_replays(tmp_path):
    records = EpisodeRecords(tmp_path, 0)
    for step in (100, 200, 300):
        records.add(step, 100, 1.5, {'achievement_eat_cow': 1.0, 'return': 3.0})
    with open(tmp_path / 'stats.jsonl', 'a') as file:
        file.write('{"step": 40')  # cut short by a hard kill
    EpisodeRecords(tmp_path, 200)  # resumed from a checkpoint at 200 env steps
    assert read_jsonl(tmp_path / 'stats.jsonl') == [
        {'step': 100, 'length': 100, 'reward': 1.5, 'achievement_eat_cow': 1.0},
        {'step': 200, 'length': 100, 'reward': 1.5, 'achievement_eat_cow': 1.0},
    ]


@pytest.mark.slow
def test_training_survives_a_killed_worker(tmp_path, monkeypatch, capfd):
    """A worker process killed mid-episode is restarted; its partial episode never
    reaches the replay and training runs to the end."""
    from dreamer_tf.envs.parallel import BatchEnv

    step = BatchEnv.step
    calls = []

    def step_and_kill(self, actions, indices=None):
        calls.append(1)
        if len(calls) == 30:
            os.kill(self.envs[1].process.pid, signal.SIGKILL)
        return step(self, actions, indices)

    monkeypatch.setattr(BatchEnv, 'step', step_and_kill)
    config = load_config(['dreamerv3', 'minatar', 'debug'], {
        'task': 'minatar_breakout', 'run.steps': 200, 'run.prefill': 40,
        'run.train_ratio': 2.0, 'run.eval_every': 1000, 'run.log_every': 100,
        'env.envs': 2, 'env.time_limit': 50, 'logdir': str(tmp_path),
    })
    _, counters = train(config)
    assert counters.env_steps.numpy() == 200 and counters.updates.numpy() > 0
    assert 'died (exit code -9): restarting env 1' in capfd.readouterr().err
    steps = []
    for path in sorted((tmp_path / 'replay').glob('*.npz')):  # Names sort by write time.
        with np.load(path) as episode:
            first, last = episode['is_first'], episode['is_last']
            assert first[0] and not first[1:].any() and last[-1] and not last[:-1].any()
            steps.append(len(first) - 1)  # Without the reset step.
    # Files and records of the finished episodes match one to one, in order, so the dropped
    # episode has neither; after them come the episodes in progress, stored at the stop.
    records = [r['length'] for r in read_jsonl(tmp_path / 'stats.jsonl')]
    assert steps[:len(records)] == records and len(records) > 0
    assert 1 <= len(steps) - len(records) <= 2


def test_progress_gives_the_share_done_and_an_eta_from_the_rate_after_prefill():
    now = [0.0]
    progress = Progress(total=10_000, prefill=1_000, clock=lambda: now[0])
    assert progress.text(500) == '5%'  # prefill: no rate yet
    assert progress.text(2_000) == '20%'  # the rate is measured from here
    now[0] = 600.0  # 1,000 steps in 10 minutes: 7,000 steps left take 70 minutes
    assert progress.text(3_000) == '30%, ETA 1h10m'
    now[0] = 1_140.0  # 100 steps left at 7,900 steps per 1,140 s: under a minute
    assert progress.text(9_900) == '99%, ETA 1m'
    assert progress.text(10_000) == '100%'
    assert Progress(total=0, prefill=0).text(5) == '–'


def test_logger_keeps_records_after_a_line_cut_short(tmp_path):
    from dreamer_tf.fileio import read_jsonl as read_tolerant
    from dreamer_tf.run.logger import Logger

    (tmp_path / 'metrics.jsonl').write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    Logger(tmp_path).write(3, {'loss': 1.0})
    assert [r['step'] for r in read_tolerant(tmp_path / 'metrics.jsonl')] == [1, 3]


