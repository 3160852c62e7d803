"""Tests for the on-disk episode replay."""

import threading
import uuid
import warnings

import numpy as np
import pytest

from dreamer_tf import replay as replay_lib
from dreamer_tf.replay import Replay


def make_step(count, first=False, last=False, image=False):
    """One transition whose ``vector`` and ``reward`` hold ``count``."""
    step = {
        'vector': np.full(5, count, np.float32),
        'action': np.zeros(2, np.float32),
        'reward': np.float32(count),
        'is_first': first,
        'is_last': last,
        'is_terminal': False,
    }
    if image:
        step['image'] = np.full((8, 8, 3), count % 256, np.uint8)
    return step


def add_episode(replay, length, start, worker=0, image=False):
    """Adds an episode whose steps count up from ``start``."""
    for i in range(length):
        replay.add(
            make_step(start + i, i == 0, i == length - 1, image), worker)


def fake_name(stamp, length):
    return f'{stamp}T000000000000-{uuid.uuid4().hex}-{length}.npz'


def test_each_finished_episode_writes_one_file_keeping_uint8(tmp_path):
    replay = Replay(tmp_path, 1000, 4, 2)
    add_episode(replay, 5, 0, image=True)
    replay.add(make_step(5, first=True, image=True))
    assert len(replay.episode_files()) == 1  # Unfinished episode not saved.
    replay.add(make_step(6, last=True, image=True))
    files = replay.episode_files()
    assert len(files) == 2
    assert files[1].name.endswith('-2.npz')
    with np.load(files[0]) as data:
        assert data['image'].dtype == np.uint8
        np.testing.assert_array_equal(data['image'][:, 0, 0, 0], range(5))
    assert replay.spec['image'] == ((8, 8, 3), np.uint8)
    assert replay.sample()['image'].dtype == np.uint8
    assert (replay.num_steps, replay.num_episodes, len(replay)) == (7, 2, 7)


def test_resume_loads_the_same_steps(tmp_path):
    replay = Replay(tmp_path, 1000, 4, 2)
    add_episode(replay, 6, 0)
    add_episode(replay, 3, 6)
    replay.add(make_step(100, first=True), worker=1)  # Never finished.
    # With seq_len equal to the stored steps, a sample holds all of them.
    resumed = Replay(tmp_path, 1000, 9, 1)
    assert (resumed.num_steps, resumed.num_episodes) == (9, 2)
    assert resumed.spec == replay.spec
    data = resumed.sample()
    np.testing.assert_array_equal(data['vector'][0, :, 0], range(9))
    np.testing.assert_array_equal(
        np.flatnonzero(data['is_first'][0]), [0, 6])


def test_capacity_evicts_oldest_episodes_from_memory_only(tmp_path):
    replay = Replay(tmp_path, 25, 20, 1)
    for start in (0, 10, 20):
        add_episode(replay, 10, start)
    assert (replay.num_steps, replay.num_episodes) == (20, 2)
    np.testing.assert_array_equal(
        replay.sample()['vector'][0, :, 0], range(10, 30))
    assert len(replay.episode_files()) == 3
    # The newest episode is kept even when it alone exceeds the capacity.
    add_episode(replay, 30, 30)
    assert (replay.num_steps, replay.num_episodes) == (30, 1)


def test_resume_reads_only_the_newest_episodes_that_fit(tmp_path):
    replay = Replay(tmp_path, 1000, 4, 2)
    for start in (0, 10, 20):
        add_episode(replay, 10, start)
    # An old unreadable file beyond the capacity must not even be opened.
    (tmp_path / fake_name('20000101', 10)).write_bytes(b'garbage')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        resumed = Replay(tmp_path, 25, 20, 1)
    assert (resumed.num_steps, resumed.num_episodes) == (20, 2)
    np.testing.assert_array_equal(
        resumed.sample()['vector'][0, :, 0], range(10, 30))


def test_sample_shapes_and_dtypes(tmp_path):
    replay = Replay(tmp_path, 1000, 6, 3)
    add_episode(replay, 10, 0, image=True)
    batch = replay.sample()
    expected = {
        'vector': ((3, 6, 5), np.float32),
        'action': ((3, 6, 2), np.float32),
        'reward': ((3, 6), np.float32),
        'is_first': ((3, 6), bool),
        'is_last': ((3, 6), bool),
        'is_terminal': ((3, 6), bool),
        'image': ((3, 6, 8, 8, 3), np.uint8),
    }
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected


def test_sample_needs_seq_len_finished_steps(tmp_path):
    replay = Replay(tmp_path, 1000, 8, 2)
    add_episode(replay, 5, 0)
    for i in range(5):  # Steps of an unfinished episode do not count.
        replay.add(make_step(5 + i, first=i == 0), worker=1)
    with pytest.raises(ValueError, match='need at least seq_len=8.*have 5'):
        replay.sample()


def test_ongoing_episodes_are_sampled_when_enabled(tmp_path):
    # DreamerV3's replay: the steps of an episode in progress are sampleable.
    replay = Replay(tmp_path / 'on', 1000, 8, 200, seed=2, ongoing=True)
    off = Replay(tmp_path / 'off', 1000, 8, 2, ongoing=False)
    for target in (replay, off):
        add_episode(target, 10, 0)                   # finished: starts 0..2
        for i in range(12):                          # worker 1, ongoing: starts 100..104
            target.add(make_step(100 + i, first=i == 0), worker=1)
        for i in range(7):                           # worker 2, shorter than seq_len
            target.add(make_step(200 + i, first=i == 0), worker=2)
    batch = replay.sample()
    counts = batch['vector'][..., 0]
    np.testing.assert_array_equal(np.diff(counts, axis=1), 1)  # contiguous, never across episodes
    np.testing.assert_array_equal(batch['reward'], counts)
    firsts = set(counts[:, 0].astype(int))
    assert firsts <= {0, 1, 2, 100, 101, 102, 103, 104} and {0, 104} <= firsts
    np.testing.assert_array_equal(batch['is_first'], np.isin(counts, [0, 100]))
    assert set(off.sample()['vector'][:, 0, 0].astype(int)) <= {0, 1, 2}
    # Before any episode has finished, the ongoing one alone can be sampled.
    fresh = Replay(tmp_path / 'fresh', 1000, 8, 2, ongoing=True)
    for i in range(7):
        fresh.add(make_step(i, first=i == 0))
    assert not fresh.can_sample
    with pytest.raises(ValueError, match='finished or ongoing'):
        fresh.sample()
    fresh.add(make_step(7))
    assert fresh.can_sample and fresh.sample()['vector'].shape == (2, 8, 5)


def test_sequences_cross_into_the_next_episode(tmp_path):
    replay = Replay(tmp_path, 1000, 8, 64)
    lengths = [3, 4, 1, 5, 2, 6]
    starts = np.cumsum([0] + lengths[:-1])
    for start, length in zip(starts, lengths):
        add_episode(replay, length, start)
    for _ in range(5):
        batch = replay.sample()
        counts = batch['vector'][..., 0]
        np.testing.assert_array_equal(np.diff(counts, axis=1), 1)
        np.testing.assert_array_equal(batch['reward'], counts)
        np.testing.assert_array_equal(
            batch['is_first'], np.isin(counts, starts))
        np.testing.assert_array_equal(
            batch['is_last'], np.isin(counts, starts + np.array(lengths) - 1))


def test_sample_covers_all_start_positions_uniformly(tmp_path):
    replay = Replay(tmp_path, 1000, 5, 100, seed=1)
    add_episode(replay, 7, 0)
    add_episode(replay, 13, 7)
    first = np.concatenate(
        [replay.sample()['vector'][:, 0, 0] for _ in range(40)])
    counts = np.bincount(first.astype(int), minlength=16)
    assert len(counts) == 16  # Valid starts are 0 .. 20 - 5.
    # 4000 draws over 16 starts: 250 each, binomial std about 15.
    assert counts.min() > 175 and counts.max() < 325


def test_same_seed_gives_same_samples(tmp_path):
    replay = Replay(tmp_path, 1000, 4, 8, seed=3)
    add_episode(replay, 50, 0)
    again = Replay(tmp_path, 1000, 4, 8, seed=3)
    np.testing.assert_array_equal(
        replay.sample()['vector'], again.sample()['vector'])


def test_interleaved_workers_get_separate_episodes(tmp_path):
    replay = Replay(tmp_path, 1000, 4, 2)
    for i in range(4):
        replay.add(make_step(i, i == 0, i == 3), worker=0)
        replay.add(make_step(100 + i, i == 0, False), worker=1)
    replay.add(make_step(104, last=True), worker=1)
    first, second = replay.episode_files()
    with np.load(first) as data:
        np.testing.assert_array_equal(data['vector'][:, 0], range(4))
    with np.load(second) as data:
        np.testing.assert_array_equal(data['vector'][:, 0], range(100, 105))


def test_drop_partial_discards_a_workers_episode(tmp_path):
    replay = Replay(tmp_path, 1000, 5, 1)
    add_episode(replay, 3, 0)
    replay.add(make_step(50, first=True), worker=0)
    replay.drop_partial(0)
    add_episode(replay, 2, 3)
    assert len(replay.episode_files()) == 2
    np.testing.assert_array_equal(
        replay.sample()['vector'][0, :, 0], range(5))


def test_store_partial_keeps_episodes_in_progress_as_truncated(tmp_path):
    replay = Replay(tmp_path, 1000, 2, 1)
    add_episode(replay, 3, 0)
    for i in range(4):
        replay.add(make_step(10 + i, first=i == 0), worker=0)
    replay.add(make_step(20, first=True), worker=1)  # A reset alone: no transition.
    replay.store_partial()
    files = replay.episode_files()
    assert [path.name[-6:] for path in files] == ['-3.npz', '-4.npz']
    with np.load(files[1]) as data:
        np.testing.assert_array_equal(data['vector'][:, 0], range(10, 14))
        np.testing.assert_array_equal(data['is_last'], [False, False, False, True])
        assert not data['is_terminal'].any()
    resumed = Replay(tmp_path, 1000, 2, 1)
    assert (resumed.num_steps, resumed.num_episodes) == (7, 2)
    # Both workers start new episodes afterwards.
    add_episode(replay, 2, 30, worker=1)
    assert replay.num_episodes == 3


def test_first_step_must_have_is_first(tmp_path):
    replay = Replay(tmp_path, 1000, 2, 2)
    with pytest.raises(ValueError, match='Worker 2.*is_first=True'):
        replay.add(make_step(0), worker=2)
    replay.add(make_step(0, first=True))
    with pytest.raises(ValueError, match='drop_partial'):
        replay.add(make_step(1, first=True))
    assert replay.spec is not None and replay.num_steps == 0


def test_shape_or_dtype_mismatch_names_the_key(tmp_path):
    replay = Replay(tmp_path, 1000, 2, 2)
    add_episode(replay, 2, 0)
    step = make_step(2, first=True)
    step['vector'] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"'vector'.*\(5,\).*float32.*\(4,\)"):
        replay.add(step)
    step['vector'] = np.zeros(5, np.float64)
    with pytest.raises(ValueError, match=r"'vector'.*float32.*float64"):
        replay.add(step)
    step = make_step(2, first=True, image=True)
    with pytest.raises(ValueError, match='image'):
        replay.add(step)
    del step['image'], step['action']
    with pytest.raises(ValueError, match='missing.*action'):
        replay.add(step)
    assert replay.num_steps == 2


def test_corrupt_files_are_skipped_with_warning_and_kept(tmp_path):
    replay = Replay(tmp_path, 1000, 2, 2)
    add_episode(replay, 4, 0)
    good = replay.episode_files()[0].read_bytes()
    bad = {
        fake_name('20000101', 4): b'not a zip file at all',
        fake_name('20000102', 4): good[:len(good) // 2],
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    with pytest.warns(UserWarning) as record:
        resumed = Replay(tmp_path, 1000, 2, 2)
    messages = ' '.join(str(w.message) for w in record)
    for name, data in bad.items():
        assert name in messages
        assert (tmp_path / name).read_bytes() == data
    assert (resumed.num_steps, resumed.num_episodes) == (4, 1)


def episode_arrays(length):
    return {
        'vector': np.zeros((length, 5), np.float32),
        'action': np.zeros((length, 2), np.float32),
        'reward': np.zeros(length, np.float32),
        'is_first': np.arange(length) == 0,
        'is_last': np.arange(length) == length - 1,
        'is_terminal': np.zeros(length, bool),
    }


@pytest.mark.parametrize('change, name_length, reason', [
    (lambda e: e.pop('reward'), 3, 'missing keys'),
    (lambda e: e.update(reward=np.zeros(2, np.float32)), 3, 'length'),
    (lambda e: None, 4, 'length'),
    (lambda e: e.update(vector=np.zeros((3, 6), np.float32)), 3, 'spec'),
    (lambda e: e.update(is_first=np.zeros(3, bool)), 3, 'is_first'),
    (lambda e: None, 0, 'zero length'),
])
def test_inconsistent_files_are_skipped(tmp_path, change, name_length, reason):
    replay = Replay(tmp_path, 1000, 2, 2)
    add_episode(replay, 4, 0)
    episode = episode_arrays(3)
    change(episode)
    # Older than the good episode, whose spec then defines the replay's.
    path = tmp_path / fake_name('20000101', name_length)
    np.savez(path, **episode)
    before = path.read_bytes()
    with pytest.warns(UserWarning, match=f'{path.name}.*{reason}'):
        resumed = Replay(tmp_path, 1000, 2, 2)
    assert resumed.num_steps == 4
    assert path.read_bytes() == before


def test_writes_leave_no_temp_files(tmp_path, monkeypatch):
    replay = Replay(tmp_path, 1000, 2, 2)
    add_episode(replay, 3, 0)
    assert sorted(tmp_path.iterdir()) == replay.episode_files()

    def crash(file, **arrays):
        file.write(b'partial')
        raise KeyboardInterrupt
    monkeypatch.setattr(replay_lib.np, 'savez', crash)
    with pytest.raises(KeyboardInterrupt):
        add_episode(replay, 2, 3)
    assert sorted(tmp_path.iterdir()) == replay.episode_files()
    assert len(replay.episode_files()) == 1


def test_leftover_temp_files_are_ignored(tmp_path):
    replay = Replay(tmp_path, 1000, 2, 2)
    add_episode(replay, 3, 0)
    tmp = tmp_path / (fake_name('29990101', 3) + replay_lib.TMP_SUFFIX)
    tmp.write_bytes(b'interrupted')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        resumed = Replay(tmp_path, 1000, 2, 2)
    assert resumed.num_steps == 3
    assert tmp not in resumed.episode_files()


def test_dataset_yields_batches_with_stored_dtypes(tmp_path):
    import tensorflow as tf

    replay = Replay(tmp_path, 1000, 6, 3)
    add_episode(replay, 10, 0, image=True)
    dataset = replay.dataset()
    for batch in dataset.take(2):
        assert batch['image'].shape == (3, 6, 8, 8, 3)
        assert batch['image'].dtype == tf.uint8
        assert batch['vector'].shape == (3, 6, 5)
        assert batch['vector'].dtype == tf.float32
        assert batch['is_first'].dtype == tf.bool
        np.testing.assert_array_equal(
            np.diff(batch['vector'].numpy()[..., 0], axis=1), 1)
    # Episodes added later reach the running dataset.
    add_episode(replay, 10, 10, image=True)
    latest = max(
        float(tf.reduce_max(batch['reward'])) for batch in dataset.take(20))
    assert latest >= 10


@pytest.mark.parametrize('ongoing', [False, True])
def test_sampling_in_a_thread_while_adding(tmp_path, ongoing):
    replay = Replay(tmp_path, 60, 8, 4, ongoing=ongoing)
    add_episode(replay, 8, 0)
    errors, done = [], threading.Event()

    def sample_loop():
        while not done.is_set():
            try:
                counts = replay.sample()['vector'][..., 0]
            except Exception as error:  # Reported by the main thread.
                errors.append(error)
                return
            if not np.all(np.diff(counts, axis=1) == 1):
                errors.append(counts)

    thread = threading.Thread(target=sample_loop)
    thread.start()
    for start in range(8, 400, 11):  # Evicts old episodes as it goes.
        add_episode(replay, 11, start)
    done.set()
    thread.join()
    assert not errors
    assert replay.num_steps <= 60


def _starts(replay, draws):
    """The first step's count of `draws` sampled rows (make_step counts)."""
    return np.concatenate([replay.sample()['reward'][:, 0] for _ in range(draws)]).astype(int)


def test_episode_sampling_stays_in_one_episode_and_draws_episodes_uniformly(tmp_path):
    # danijar/dreamerv2 replay: an episode uniformly, whatever its length, then a start in it.
    replay = Replay(tmp_path, 1000, 4, 500, seed=0, sampling='episodes')
    add_episode(replay, 10, 0)      # counts 0..9
    add_episode(replay, 100, 100)   # counts 100..199
    batch = replay.sample()
    assert batch['is_first'][:, 0].all() and not batch['is_first'][:, 1:].any()
    # Consecutive counts: no row runs from one episode into the next.
    assert (np.diff(batch['reward'], axis=1) == 1).all()
    starts = _starts(replay, 4)
    short = starts < 100
    assert abs(short.mean() - 0.5) < 0.04
    assert set(starts[short]) == set(range(7)) and set(starts[~short]) == set(range(100, 197))


def test_prioritize_ends_gives_the_last_start_length_plus_one_draws(tmp_path):
    # n = 10, length 4: draws uniform over 0..10 clipped to 6, so start 6 takes 5 of 11.
    replay = Replay(tmp_path, 1000, 4, 1000, seed=1, sampling='episodes', prioritize_ends=True)
    add_episode(replay, 10, 0)
    frequency = np.bincount(_starts(replay, 11), minlength=7) / 11000
    np.testing.assert_allclose(frequency, [1 / 11] * 6 + [5 / 11], atol=0.012)
    plain = Replay(tmp_path / 'plain', 1000, 4, 1000, seed=1, sampling='episodes')
    add_episode(plain, 10, 0)
    np.testing.assert_allclose(np.bincount(_starts(plain, 7), minlength=7) / 7000, [1 / 7] * 7,
                               atol=0.012)


def test_episode_sampling_names_episodes_too_short_to_sample(tmp_path):
    replay = Replay(tmp_path, 1000, 8, 2, sampling='episodes')
    with pytest.warns(UserWarning, match='shorter than run.batch_length 8'):
        add_episode(replay, 5, 0)
    assert not replay.can_sample
    with pytest.raises(ValueError, match='no episode has seq_len=8'):
        replay.sample()
    with pytest.raises(ValueError, match='prioritize_ends needs'):
        Replay(tmp_path / 'x', 1000, 8, 2, prioritize_ends=True)


@pytest.mark.parametrize('ongoing', [False, True])
def test_meta_keys_are_written_but_never_sampled_or_checked(tmp_path, ongoing):
    """`meta_` keys (the policy version) go to the episode files only, so that a replay
    of episodes without them (a resumed older run) takes steps with them."""
    old = Replay(tmp_path, 1000, 4, 2)
    add_episode(old, 6, 0)
    replay = Replay(tmp_path, 1000, 4, 2, ongoing=ongoing)
    for i in range(6):
        step = make_step(100 + i, first=i == 0, last=i == 5 and not ongoing)
        replay.add({**step, 'meta_policy_version': np.int64(i)})
    newest = replay.episode_files()[-1]
    if not ongoing:
        assert list(np.load(newest)['meta_policy_version']) == list(range(6))
    assert 'meta_policy_version' not in replay.spec
    assert 'meta_policy_version' not in replay.sample()
    assert Replay(tmp_path, 1000, 4, 2).num_steps == (12 if not ongoing else 6)
