"""Metrics to metrics.jsonl, TensorBoard and a console progress line."""

import json
import math
import time
from collections import defaultdict
from pathlib import Path

import tensorflow as tf


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


class Logger:
    """Appends one JSON line per write (metrics.jsonl) and mirrors it to TensorBoard.

    A line cut short by a hard kill is skipped by `dreamer_tf.fileio.read_jsonl`.
    """

    def __init__(self, logdir):
        self.path = Path(logdir) / 'metrics.jsonl'
        self.writer = tf.summary.create_file_writer(str(logdir))

    def write(self, step, metrics):
        record = {'step': int(step), 'time': time.time()}
        record.update({k: float(v) for k, v in metrics.items() if _finite(v)})
        with open(self.path, 'a') as file:
            file.write(json.dumps(record) + '\n')
        with self.writer.as_default(step=int(step)):
            for key, value in record.items():
                if key not in ('step', 'time'):
                    tf.summary.scalar(key, value)
        self.writer.flush()

    def console(self, step, metrics, fields):
        parts = [f'{step:>9,d} steps']
        for key, label, fmt in fields:
            if key in metrics:
                parts.append(f'{label} {metrics[key]:{fmt}}')
        print(' | '.join(parts), flush=True)


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
