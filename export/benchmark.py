"""Batch-1 latency of one policy step per engine, and model sizes on disk.

Every engine runs the same step with its recurrent state carried from its own
outputs, on random observations, after a warm-up; the median and 99th
percentile of the wall-clock time per call are reported in milliseconds.
"""

import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from export import metadata, parity
from export.runtime import Policy


def size_on_disk(path):
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob('*') if f.is_file())
    return path.stat().st_size


def engines(path, threads):
    """[(engine name, step function over a dict of numpy inputs)] for the model at `path`."""
    meta = metadata.read(path)
    if meta['format'] == 'savedmodel':
        signature = tf.saved_model.load(str(path)).signatures['step']
        return [
            ('tf_savedmodel', lambda inputs: {k: v.numpy() for k, v in signature(**inputs).items()})
        ]
    if meta['format'] == 'onnx':
        policy = Policy(path, threads=threads)
        session = policy.session

        def runtime_step(inputs):
            # The runtime's own Policy.step: validation, state and noise handling included.
            obs = {k: inputs[k][0] for k in meta['observations']}
            action = policy.step(obs)
            return {
                'action': action[None],
                'next_deter': policy.state['deter'],
                'next_stoch': policy.state['stoch'],
            }

        return [
            (
                'onnxruntime',
                lambda inputs: dict(
                    zip(metadata.STEP_OUTPUTS, session.run(list(metadata.STEP_OUTPUTS), inputs))
                ),
            ),
            ('runtime Policy.step', runtime_step),
        ]
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    signature = interpreter.get_signature_runner('step')
    return [(f'tflite_{meta["variant"]}', lambda inputs: signature(**inputs))]


def measure(run_step, meta, steps, warmup):
    """Per-call latencies (ms) of `run_step` over a rollout that carries its state."""
    sequence = parity.random_inputs(meta, steps + warmup, batch=1, seed=1, restart=0.0)
    state = metadata.initial_state(meta, 1)
    times = []
    for inputs in sequence:
        start = time.perf_counter()
        out = run_step({**inputs, **state})
        times.append(time.perf_counter() - start)
        state = {
            'deter': out['next_deter'],
            'stoch': out['next_stoch'],
            'prev_action': out['action'],
        }
    return 1000 * np.array(times[warmup:])


def benchmark(paths, steps=1000, warmup=50, threads=1):
    """Rows {engine, model, size_bytes, median_ms, p99_ms} for the models in `paths`."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    rows = []
    for path in paths:
        meta = metadata.read(path)
        for name, run_step in engines(path, threads):
            times = measure(run_step, meta, steps, warmup)
            rows.append(
                {
                    'engine': name,
                    'model': Path(path).name,
                    'size_bytes': size_on_disk(path),
                    'median_ms': float(np.median(times)),
                    'p99_ms': float(np.percentile(times, 99)),
                }
            )
    return rows
