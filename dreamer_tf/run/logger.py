"""Metrics to metrics.jsonl, TensorBoard and a console progress line."""

import contextlib
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import tensorflow as tf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.image import plugin_data_pb2

from dreamer_tf.fileio import read_jsonl, write_atomic

# TensorBoard's image plugin metadata, as tf.summary.image writes it.
IMAGE_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name='images', content=plugin_data_pb2.ImagePluginData(version=0).SerializeToString()
    )
)


class Mean:
    """Running means of scalar metrics between two writes."""

    def __init__(self):
        self.sums = defaultdict(float)
        self.counts = defaultdict(int)

    def add(self, metrics):
        for key, value in metrics.items():
            self.sums[key] += float(value)
            self.counts[key] += 1

    def result(self):
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums.clear()
        self.counts.clear()
        return out


class Profile:
    """Where a run spends its time: the seconds inside each named phase since the last
    `result`, as shares of the wall time (`time_<phase>` in metrics.jsonl). Phases of
    different threads overlap, so the shares may sum past 1."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seconds = defaultdict(float)
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, phase):
        begin = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self._seconds[phase] += time.perf_counter() - begin

    def result(self):
        now = time.perf_counter()
        with self._lock:
            seconds, self._seconds = self._seconds, defaultdict(float)
        wall, self._start = now - self._start, now
        return {f'time_{phase}': value / wall for phase, value in seconds.items()}


class Logger:
    """Appends one JSON line per write (metrics.jsonl) and mirrors it to TensorBoard.

    Non-finite values are written as they are (Python's json writes NaN,
    Infinity and -Infinity, and reads them back): a loss that went NaN shows as
    NaN rather than vanishing from the record. A line cut short by a hard kill
    is skipped by `dreamer_tf.fileio.read_jsonl`.
    """

    def __init__(self, logdir):
        self.path = Path(logdir) / 'metrics.jsonl'
        self.writer = tf.summary.create_file_writer(str(logdir))
        _end_line(self.path)

    def write(self, step, metrics):
        record = {'step': int(step), 'time': time.time()}
        record.update({k: float(v) for k, v in metrics.items() if _number(v)})
        with open(self.path, 'a') as file:
            file.write(json.dumps(record) + '\n')
        with self.writer.as_default(step=int(step)):
            for key, value in record.items():
                if key not in ('step', 'time'):
                    tf.summary.scalar(key, value)
        self.writer.flush()

    def gif(self, tag, data, width, height, step):
        """An animated GIF (its encoded bytes) in TensorBoard's image dashboard, which
        stores encoded images as given (tf.summary.image's format) and plays GIFs."""
        tensor = tf.constant([str(width), str(height), data])
        with self.writer.as_default(step=int(step)):
            tf.summary.write(tag, tensor, metadata=IMAGE_METADATA)
        self.writer.flush()

    def console(self, step, metrics, fields, progress=None):
        """One line: the step (with `progress`, its share of the budget and an ETA) and
        the `fields` (key, label, format) that `metrics` holds."""
        parts = [f'{step:>9,d} steps' + (f' ({progress.text(step)})' if progress else '')]
        for key, label, fmt in fields:
            if key in metrics:
                parts.append(f'{label} {metrics[key]:{fmt}}')
        print(' | '.join(parts), flush=True)


class Progress:
    """Share of a run's step budget done, and the time left at the rate of env steps
    since the first step after prefill in this process (prefill runs no updates, so
    its rate would promise too early an end)."""

    def __init__(self, total, prefill, clock=time.monotonic):
        self.total, self.prefill, self.clock = total, prefill, clock
        self.start = None  # (time, step) of the first call past prefill

    def text(self, step):
        share = f'{min(step / self.total, 1.0):.0%}' if self.total else '–'
        if step < self.prefill or step >= self.total:
            return share
        now = self.clock()
        if self.start is None:
            self.start = (now, step)
            return share
        began, first = self.start
        if step <= first:
            return share
        left = (self.total - step) * (now - began) / (step - first)
        return f'{share}, ETA {_duration(left)}'


def _duration(seconds):
    minutes = int(round(seconds / 60))
    return f'{minutes // 60}h{minutes % 60:02d}m' if minutes >= 60 else f'{max(minutes, 1)}m'


def _number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class EpisodeRecords:
    """One JSON line per finished training episode (`stats.jsonl`), in the format of
    Crafter's `crafter.Recorder`: `length` (env steps), `reward` and the episode's
    `achievement_<name>` values, plus `step`, the env steps when it ended.

    Crafter's score is computed from these records (dreamer_tf/reproduce/scores.py).
    A run resumed from a checkpoint replays the env steps after it, so on
    resume the file is rewritten (atomically) without the records past the
    restored step and without a line cut short by a hard kill.
    """

    NAME = 'stats.jsonl'

    def __init__(self, logdir, restored_step):
        self.path = Path(logdir) / self.NAME
        if self.path.exists():
            kept = [r for r in read_jsonl(self.path) if r.get('step', 0) <= restored_step]
            write_atomic(self.path, ''.join(json.dumps(r) + '\n' for r in kept))

    def add(self, step, length, reward, logs):
        record = {'step': int(step), 'length': int(length), 'reward': float(reward)}
        record.update({k: float(v) for k, v in logs.items() if k.startswith('achievement_')})
        with open(self.path, 'a') as file:
            file.write(json.dumps(record) + '\n')


def _end_line(path):
    """End a last line cut short by a hard kill, so that the next record is not glued to it."""
    if path.exists() and path.stat().st_size:
        with open(path, 'rb') as file:
            file.seek(-1, 2)
            cut = file.read(1) != b'\n'
        if cut:
            with open(path, 'a') as file:
                file.write('\n')
