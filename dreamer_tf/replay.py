"""Episode replay buffer stored on disk as one ``.npz`` file per episode.

Steps from several env workers are collected into per-worker episodes; each
finished episode is written atomically to disk and kept in memory up to a
capacity in steps. Training sequences are sampled uniformly from the stored
episodes viewed as one long concatenation, so a sequence may run from the end
of one episode into the start of the next (the world model resets its state
wherever ``is_first`` is True).

With ``ongoing=True`` the episodes still being collected are sampled too, as
DreamerV3's replay does (danijar/dreamerv3 ``embodied/replay``: a sequence
becomes sampleable as soon as its last step is added), so the newest
behaviour is trained on before its episode ends. PlaNet, DreamerV1 and
DreamerV2 loaded finished episodes only.

With ``sampling='episodes'`` a sequence is drawn as DreamerV2's replay draws it
(danijar/dreamerv2 common/replay.py ``_sample_sequence``): an episode of at least
``seq_len`` steps uniformly, then a start inside it, uniform over its
``n - seq_len + 1`` starts or, with ``prioritize_ends``, over ``n + 1`` draws
clipped to the last start, which so takes ``seq_len + 1`` of them; the sequence
begins with ``is_first``.
"""

import bisect
import datetime
import os
import pathlib
import re
import threading
import uuid
import warnings

import numpy as np

REQUIRED_KEYS = ('action', 'reward', 'is_first', 'is_last', 'is_terminal')
# Step keys with this prefix say how a step was collected (`meta_policy_version`): written
# to the episode files, but neither sampled nor part of the spec, so that episodes with
# and without them (an older run resumed) share one replay.
META_PREFIX = 'meta_'
SAMPLINGS = ('steps', 'episodes')
FLAG_KEYS = ('is_first', 'is_last', 'is_terminal')

# {UTC time with microseconds}-{uuid4 hex}-{length}.npz: sorts by write time.
FILENAME = re.compile(r'^\d{8}T\d{12}-[0-9a-f]{32}-(\d+)\.npz$')
# Appended to the final name while writing; such files never match FILENAME.
TMP_SUFFIX = '.tmp'


class Replay:
    """Replay of finished episodes with uniform sequence sampling.

    Episodes are saved with ``np.savez`` (uncompressed): for a 500-step
    episode of 64x64x3 images, ``np.savez_compressed`` made the file 1.3-5x
    smaller but took 0.4-0.8 s instead of 15-18 ms, which would stall the env
    loop at every episode end.
    Files are written to a temp name and moved into place with ``os.replace``,
    so a crash never leaves a partial file under an episode name. They are
    not fsynced, to keep episode ends cheap; a file damaged by power loss is
    skipped with a warning on the next load.

    On construction the newest episodes in ``directory`` that fit in
    ``capacity`` steps are loaded. Unreadable or inconsistent files are
    skipped with a warning and never modified.

    Thread safety: one lock guards the in-progress and stored episodes, so
    ``add`` may run in the env loop while ``sample`` runs in a ``tf.data``
    thread. Stored episode arrays are read-only, which lets ``sample`` copy
    from them after releasing the lock.
    """

    def __init__(self, directory, capacity, seq_len, batch_size, seed=0, ongoing=False,
                 sampling='steps', prioritize_ends=False):
        if capacity < 1 or seq_len < 1 or batch_size < 1:
            raise ValueError(
                f'capacity, seq_len and batch_size must be >= 1, got '
                f'{capacity}, {seq_len}, {batch_size}.')
        if sampling not in SAMPLINGS or (prioritize_ends and sampling != 'episodes'):
            raise ValueError(f'sampling must be one of {SAMPLINGS} (prioritize_ends needs '
                             f"'episodes'), got {sampling!r}, prioritize_ends={prioritize_ends}")
        self._sampling, self._prioritize_ends = sampling, bool(prioritize_ends)
        self._warned_short = False
        self._directory = pathlib.Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._capacity = int(capacity)
        self._seq_len = int(seq_len)
        self._batch_size = int(batch_size)
        self._rng = np.random.default_rng(seed)
        self._ongoing = bool(ongoing)
        self._lock = threading.Lock()
        self._spec = None
        self._partial = {}  # worker -> {key: [array per step]}
        self._last_time = None
        # Stored episodes, oldest first. Positions are absolute in the virtual
        # concatenation of every episode ever stored, so evicting from the
        # front only moves ``_begin`` instead of shifting all offsets.
        self._episodes = []
        self._ends = []
        self._begin = 0
        self._load()

    @property
    def num_steps(self):
        """Steps in stored, finished episodes."""
        with self._lock:
            return self._stored_steps()

    @property
    def can_sample(self):
        """Whether ``sample`` has a sequence to draw."""
        with self._lock:
            if self._sampling == 'episodes':
                return bool(self._long_episodes())
            return bool(self._start_positions()[2][-1] > 0)

    @property
    def num_episodes(self):
        with self._lock:
            return len(self._episodes)

    def __len__(self):
        return self.num_steps

    @property
    def spec(self):
        """Dict key -> (shape, dtype) of one step, or None before any data."""
        return None if self._spec is None else dict(self._spec)

    def episode_files(self):
        """Sorted paths of all episode files in the directory."""
        return sorted(
            path for path in self._directory.glob('*.npz')
            if FILENAME.match(path.name))

    def add(self, transition, worker=0):
        """Appends one step to ``worker``'s episode; stores it on ``is_last``.

        Raises ValueError if the step does not start an episode with
        ``is_first`` when it should, or does not match the replay's keys,
        shapes and dtypes (defined by the first step ever added or loaded).
        """
        step = self._convert(transition)
        with self._lock:
            self._check_order(step, worker)
            self._check_spec(step)
            steps = self._partial.setdefault(worker, {k: [] for k in step})
            for key, value in step.items():
                steps[key].append(value)
            if not step['is_last']:
                return
            del self._partial[worker]
        self._save(steps)

    def store_partial(self):
        """Stores every in-progress episode as a truncated one, e.g. at a stop.

        The last step gets ``is_last`` and keeps ``is_terminal``, as at a time
        limit, so a resumed run trains on every step it collected. An episode
        of one step holds no transition and is dropped.
        """
        with self._lock:
            partial, self._partial = self._partial, {}
        for steps in partial.values():
            if len(steps['is_first']) < 2:
                continue
            steps['is_last'][-1] = np.array(True)
            self._save(steps)

    def drop_partial(self, worker):
        """Discards ``worker``'s in-progress episode, e.g. after a crash."""
        with self._lock:
            self._partial.pop(worker, None)

    def sample(self):
        """Returns a batch of sequences, arrays shaped [batch, seq_len, ...].

        Start positions are uniform over all ``num_steps - seq_len + 1``
        positions of the stored episodes concatenated oldest to newest and,
        with ``ongoing``, the ``n - seq_len + 1`` positions of each episode in
        progress that has ``n >= seq_len`` steps.
        """
        if self._sampling == 'episodes':
            return self._sample_in_episodes()
        batch, length = self._batch_size, self._seq_len
        with self._lock:
            stored, partial, bounds = self._start_positions()
            if bounds[-1] == 0:
                have = 'finished or ongoing' if self._ongoing else 'finished'
                raise ValueError(
                    f'Cannot sample: need at least seq_len={length} steps of '
                    f'{have} episodes; have {self._stored_steps()} finished.')
            picks = self._rng.integers(0, bounds[-1], size=batch)
            rows = np.flatnonzero(picks < stored)
            copies = self._plan_copies((self._begin + picks[rows]).tolist(), rows.tolist())
            # Slices of the lists of per-step arrays, which `add` never modifies.
            ongoing = []
            for row in np.flatnonzero(picks >= stored):
                index = bisect.bisect_right(bounds, picks[row]) - 1
                offset = picks[row] - bounds[index]
                steps = partial[index]
                ongoing.append((row, {k: v[offset:offset + length] for k, v in steps.items()}))
            spec = self._spec
        out = {
            key: np.empty((batch, length) + shape, dtype)
            for key, (shape, dtype) in spec.items()}
        for row, pos, episode, offset, size in copies:
            for key, array in out.items():
                array[row, pos:pos + size] = episode[key][offset:offset + size]
        for row, steps in ongoing:
            for key, array in out.items():
                array[row] = np.stack(steps[key])
        return out

    def _sample_in_episodes(self):
        """DreamerV2's sampling (module docstring): each row from one episode."""
        length = self._seq_len
        with self._lock:
            episodes = self._long_episodes()
            if not episodes:
                raise ValueError(f'Cannot sample: no episode has seq_len={length} steps yet.')
            picks = self._rng.integers(0, len(episodes), size=self._batch_size)
            rows = []
            for pick in picks:
                episode = episodes[pick]
                total = len(episode['is_first'])
                upper = total - length + 1 + (length if self._prioritize_ends else 0)
                start = min(int(self._rng.integers(upper)), total - length)
                rows.append({k: v[start:start + length] for k, v in episode.items()})
        out = {key: np.stack([np.asarray(row[key]) for row in rows]) for key in _data(rows[0])}
        out['is_first'][:, 0] = True
        return out

    def _long_episodes(self):
        """Under the lock: the stored (and, with ``ongoing``, the in-progress) episodes
        that hold a sequence, as mappings of key to an array or a list of steps."""
        episodes = [e for e in self._episodes if len(e['is_first']) >= self._seq_len]
        if self._ongoing:
            episodes += [steps for steps in self._partial.values()
                         if len(steps['is_first']) >= self._seq_len]
        return episodes

    def dataset(self, prefetch=2):
        """Endless ``tf.data.Dataset`` of ``sample()`` batches.

        Each element is drawn fresh from the replay as it is now. Create it
        once the replay holds data, since the spec defines the signature.
        """
        import tensorflow as tf  # Only this method needs TensorFlow.

        if self._spec is None:
            raise ValueError('Cannot build a dataset before adding any step.')
        lead = (self._batch_size, self._seq_len)
        signature = {
            key: tf.TensorSpec(lead + shape, tf.as_dtype(dtype), name=key)
            for key, (shape, dtype) in self._spec.items()}

        def generate():
            while True:
                yield self.sample()

        dataset = tf.data.Dataset.from_generator(
            generate, output_signature=signature)
        return dataset.prefetch(prefetch)

    def _stored_steps(self):
        return self._ends[-1] - self._begin if self._ends else 0

    def _start_positions(self):
        """Sequence starts, under the lock: (count in the stored episodes, the
        ongoing episodes that hold a sequence, cumulative start counts beginning
        with the stored ones)."""
        length = self._seq_len
        stored = max(0, self._stored_steps() - length + 1)
        partial = [
            steps for steps in self._partial.values()
            if len(steps['is_first']) >= length] if self._ongoing else []
        bounds = np.cumsum([stored] + [len(steps['is_first']) - length + 1 for steps in partial])
        return stored, partial, bounds

    def _plan_copies(self, starts, rows):
        """Splits each sequence into (row, pos, episode, offset, size) pieces.

        Looping over these pieces copies only the sampled steps, unlike a flat
        cache of all steps, which would cost a full copy of the replay
        (gigabytes for images) every time an episode is added.
        """
        copies = []
        for row, start in zip(rows, starts):
            index = bisect.bisect_right(self._ends, start)
            pos = 0
            while pos < self._seq_len:
                episode_begin = self._ends[index - 1] if index else self._begin
                offset = start + pos - episode_begin
                size = min(
                    self._ends[index] - episode_begin - offset,
                    self._seq_len - pos)
                copies.append((row, pos, self._episodes[index], offset, size))
                pos += size
                index += 1
        return copies

    def _convert(self, transition):
        """Copies a transition to numpy arrays with the convention's dtypes."""
        missing = [key for key in REQUIRED_KEYS if key not in transition]
        if missing:
            raise ValueError(f'Transition is missing keys {missing}.')
        # Copy, because envs may reuse and overwrite their observation buffers.
        step = {key: np.array(value) for key, value in transition.items()}
        step['reward'] = step['reward'].astype(np.float32)
        for key in FLAG_KEYS:
            step[key] = step[key].astype(bool)
        return step

    def _check_order(self, step, worker):
        started = worker in self._partial
        if not started and not step['is_first']:
            raise ValueError(
                f'Worker {worker!r}: the first step of an episode must have '
                f'is_first=True, got is_first=False. Start each episode with '
                f'the step returned by reset().')
        if started and step['is_first']:
            length = len(self._partial[worker]['is_first'])
            raise ValueError(
                f'Worker {worker!r}: got is_first=True while its episode of '
                f'{length} steps has not ended with is_last=True. Call '
                f'drop_partial({worker!r}) to discard the unfinished episode.')

    def _check_spec(self, step):
        spec = {key: (value.shape, value.dtype) for key, value in _data(step).items()}
        if self._spec is None:
            self._spec = spec
            return
        if spec.keys() != self._spec.keys():
            raise ValueError(
                f'Transition keys {sorted(spec)} differ from the replay keys '
                f'{sorted(self._spec)}.')
        for key, (shape, dtype) in self._spec.items():
            if spec[key] != (shape, dtype):
                raise ValueError(
                    f'Transition key {key!r}: expected shape {shape} dtype '
                    f'{dtype}, got shape {spec[key][0]} dtype {spec[key][1]}.')

    def _new_filename(self, length):
        now = datetime.datetime.now(datetime.timezone.utc)
        if self._last_time is not None and now <= self._last_time:
            # Keeps names in write order even if the clock steps back.
            now = self._last_time + datetime.timedelta(microseconds=1)
        self._last_time = now
        return f'{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}-{length}.npz'

    def _save(self, steps):
        """Writes an ended episode (lists of steps per key) to disk, then keeps it in memory."""
        episode = {key: np.stack(values) for key, values in steps.items()}
        with self._lock:
            name = self._new_filename(len(episode['is_first']))
        self._write(episode, name)
        with self._lock:
            self._store(episode)

    def _write(self, episode, name):
        path = self._directory / name
        tmp = path.with_name(name + TMP_SUFFIX)
        try:
            with open(tmp, 'wb') as file:
                np.savez(file, **episode)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _store(self, episode):
        """Appends a finished episode and evicts the oldest beyond capacity."""
        episode = _data(episode)
        length = len(episode['is_first'])
        if self._sampling == 'episodes' and length < self._seq_len and not self._warned_short:
            self._warned_short = True
            warnings.warn(
                f'an episode of {length} steps is shorter than run.batch_length '
                f'{self._seq_len}; replay_sampling episodes (DreamerV2) never samples it. Lower '
                '--run.batch_length or set --run.replay_sampling steps.', stacklevel=2)
        for array in episode.values():
            array.setflags(write=False)
        start = self._ends[-1] if self._ends else self._begin
        self._episodes.append(episode)
        self._ends.append(start + len(episode['is_first']))
        while len(self._episodes) > 1 and self._stored_steps() > self._capacity:
            self._episodes.pop(0)
            self._begin = self._ends.pop(0)

    def _load(self):
        """Loads the newest episode files that fit in the capacity."""
        for path in self._directory.glob('*.npz'):
            if not FILENAME.match(path.name):
                warnings.warn(
                    f'Replay: skipping {path}: name does not match the '
                    f'episode file pattern.', stacklevel=3)
        loaded, total = [], 0
        for path in reversed(self.episode_files()):
            length = int(FILENAME.match(path.name).group(1))
            # Files hold whole episodes, so stop at the first one that does
            # not fit instead of reading it; the newest one is always kept.
            if loaded and total + length > self._capacity:
                break
            episode, problem = self._read(path, length)
            if problem:
                warnings.warn(
                    f'Replay: skipping {path}: {problem}', stacklevel=3)
                continue
            if self._spec is None:
                self._spec = {
                    key: (value.shape[1:], value.dtype)
                    for key, value in episode.items()}
            loaded.append(episode)
            total += length
        for episode in reversed(loaded):
            self._store(episode)

    def _read(self, path, length):
        """Returns (episode, None), or (None, reason the file is unusable)."""
        if length < 1:
            return None, 'the file name says the episode has zero length.'
        try:
            with np.load(path, allow_pickle=False) as data:
                episode = _data({key: data[key] for key in data.files})
        # The file is untrusted input; any failure to parse it means corrupt.
        except Exception as error:  # pylint: disable=broad-except
            return None, f'cannot read it ({type(error).__name__}: {error}).'
        missing = [key for key in REQUIRED_KEYS if key not in episode]
        if missing:
            return None, f'missing keys {missing}.'
        lengths = {key: len(value) if value.ndim else 0
                   for key, value in episode.items()}
        if set(lengths.values()) != {length}:
            return None, (
                f'arrays must all have the length {length} from the file '
                f'name, got {lengths}.')
        if self._spec is not None:
            spec = {key: (value.shape[1:], value.dtype)
                    for key, value in episode.items()}
            if spec != self._spec:
                return None, (
                    f'steps do not match the replay spec: expected '
                    f'{self._spec}, got {spec}.')
        for key in FLAG_KEYS:
            if episode[key].dtype != bool:
                return None, (
                    f'{key!r} has dtype {episode[key].dtype}, not bool.')
        is_first, is_last = episode['is_first'], episode['is_last']
        if not is_first[0] or is_first[1:].any():
            return None, 'is_first must be True exactly at the first step.'
        if not is_last[-1] or is_last[:-1].any():
            return None, 'is_last must be True exactly at the last step.'
        return episode, None


def _data(step):
    """A step's or episode's keys without the `META_PREFIX` ones."""
    return {key: value for key, value in step.items() if not key.startswith(META_PREFIX)}
