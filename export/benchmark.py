"""Batch-1 latency of one policy step per engine, and model sizes on disk.

Every engine runs the same step with its recurrent state carried from its own
outputs, on random observations, after a warm-up; the median and 99th
percentile of the wall-clock time per call are reported in milliseconds.
"""

import importlib.util
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dreamer_tf_export import metadata, parity
from dreamer_tf_runtime import Policy


def size_on_disk(path):
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob('*') if f.is_file())
    return path.stat().st_size


def set_tf_threads(threads):
    """TensorFlow's thread pools; only possible before TensorFlow first runs an op."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def engines(path, threads):
    """[(engine name, step function over a dict of numpy inputs)] for the model at `path`."""
    meta = metadata.read(path)
    if meta['format'] == 'savedmodel':
        signature = tf.saved_model.load(str(path)).signatures['step']
        return [
            ('tf_savedmodel', lambda inputs: {k: v.numpy() for k, v in signature(**inputs).items()})
        ]
    if meta['format'] == 'onnx':
        policy = Policy(path, threads=threads, observations='model')
        return [('onnxruntime', policy.engine), ('runtime Policy.step', _runtime_step(policy))]
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    signature = interpreter.get_signature_runner('step')
    rows = [(f'tflite_{meta["variant"]}', lambda inputs: signature(**inputs))]
    if importlib.util.find_spec('ai_edge_litert'):
        policy = Policy(path, threads=threads, observations='model')
        rows.append((f'runtime Policy.step (LiteRT {meta["variant"]})', _runtime_step(policy)))
    return rows


def _runtime_step(policy):
    """The runtime's own Policy.step: validation, state and noise handling included."""

    def step(inputs):
        obs = {k: inputs[k][0] for k in policy.meta['observations']}
        action = policy.step(obs)
        return {'action': action[None], 'next_deter': policy.state['deter'],
                'next_stoch': policy.state['stoch']}

    return step


def benchmark(paths, steps=1000, warmup=50, threads=1, block=50):
    """Rows {engine, model, size_bytes, median_ms, p99_ms} for the models in `paths`.

    The engines take turns in blocks of `block` steps, so that load from other
    processes on a shared machine falls on all of them alike; the first step of
    each block is not counted, since the previous engine has evicted the weights
    from the CPU caches (a policy deployed alone keeps them warm). `threads` applies
    to ONNX Runtime and TFLite; TensorFlow's must be set before it starts
    (`set_tf_threads`).
    """
    runs = []
    for path in paths:
        meta = metadata.read(path)
        sequence = parity.random_inputs(meta, steps + warmup, batch=1, seed=1, restart=0.0)
        for name, run_step in engines(path, threads):
            state = metadata.initial_state(meta, 1)
            runs.append(
                {
                    'engine': name,
                    'path': path,
                    'step': run_step,
                    'state': state,
                    'sequence': sequence,
                    'times': [],
                }
            )
    for first in range(0, steps + warmup, block):
        for run in runs:
            for t in range(first, min(first + block, steps + warmup)):
                start = time.perf_counter()
                out = run['step']({**run['sequence'][t], **run['state']})
                if t >= warmup and t > first:
                    run['times'].append(time.perf_counter() - start)
                run['state'] = {
                    'deter': out['next_deter'],
                    'stoch': out['next_stoch'],
                    'prev_action': out['action'],
                }
    rows = []
    for run in runs:
        times = 1000 * np.array(run['times'])
        rows.append(
            {
                'engine': run['engine'],
                'model': Path(run['path']).name,
                'size_bytes': size_on_disk(run['path']),
                'median_ms': float(np.median(times)),
                'p99_ms': float(np.percentile(times, 99)),
            }
        )
    return rows
