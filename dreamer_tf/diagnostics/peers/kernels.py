"""Element-wise kernel speed of TensorFlow or PyTorch on this machine, float32 and bf16.

The update's matmuls and convolutions run in oneDNN in both frameworks; the
element-wise work between them (activations, gates, casts, sums) runs in each
framework's own kernels. This times those kernels one op at a time (eagerly, as
PyTorch runs, so TensorFlow's graph rewrites cannot fold the repeats) on a
[rows, cols] tensor, and prints one JSON row per op and dtype: the median
milliseconds per op and the bytes it reads and writes per second. `compare.py
kernels` runs it in this environment and in sheeprl's, side by side.

  python dreamer_tf/diagnostics/peers/kernels.py --framework tensorflow
"""

import argparse
import json
import os
import statistics
import time

# The imagination's GRU pre-activations: 1024 rows (16x64 starts) of 3 x 512 gates.
ROWS, COLS = 1024, 1536
OPS = ('mul', 'add', 'sigmoid', 'tanh', 'silu', 'cast')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--framework', required=True, choices=('tensorflow', 'torch'))
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--repeats', type=int, default=50, help='timed calls per op')
    args = parser.parse_args(argv)
    build = tensorflow_ops if args.framework == 'tensorflow' else torch_ops
    for dtype, ops, inputs in build(args.threads):
        for name in OPS:
            seconds = median_seconds(ops[name], inputs[name], args.repeats)
            size = 2 if dtype == 'bfloat16' else 4
            # Bytes moved: each input read once and the output written once; a cast
            # round trip moves the tensor in both dtypes.
            moved = ROWS * COLS * ({'mul': 3, 'add': 3}.get(name, 2) * size)
            if name == 'cast':
                moved = ROWS * COLS * 2 * (2 + 4)
            row = {'framework': args.framework, 'op': name, 'dtype': dtype,
                   'ms': 1e3 * seconds, 'gb_per_s': moved / seconds / 1e9}
            print(json.dumps(row), flush=True)


def median_seconds(op, inputs, repeats):
    op(*inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        op(*inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tensorflow_ops(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    for dtype, other in ((tf.float32, tf.bfloat16), (tf.bfloat16, tf.float32)):
        x = tf.cast(tf.random.normal((ROWS, COLS)), dtype)
        y = tf.cast(tf.random.normal((ROWS, COLS)), dtype)
        # Eager ops on the CPU return when their kernel has run.
        ops = {
            'mul': tf.multiply,
            'add': tf.add,
            'sigmoid': tf.sigmoid,
            'tanh': tf.tanh,
            'silu': tf.nn.silu,
            'cast': lambda a, other=other, dtype=dtype: tf.cast(tf.cast(a, other), dtype),
        }
        yield dtype.name, ops, _inputs(x, y)


def torch_ops(threads):
    import torch

    torch.set_num_threads(threads)
    for dtype, other in ((torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32)):
        x = torch.randn(ROWS, COLS).to(dtype)
        y = torch.randn(ROWS, COLS).to(dtype)
        ops = {
            'mul': torch.mul,
            'add': torch.add,
            'sigmoid': torch.sigmoid,
            'tanh': torch.tanh,
            'silu': torch.nn.functional.silu,
            'cast': lambda a, other=other, dtype=dtype: a.to(other).to(dtype),
        }
        yield str(dtype).replace('torch.', ''), ops, _inputs(x, y)


def _inputs(x, y):
    return {name: (x, y) if name in ('mul', 'add') else (x,) for name in OPS}


if __name__ == '__main__':
    main()
