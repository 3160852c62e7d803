"""Batch-1 policy-step latency (median, p99) and size on disk of exported models, on the CPU.

    python scripts/export_benchmark.py export/ --steps 1000 --threads 1

Measures every model in the folder that scripts/export.py wrote (SavedModel
through TensorFlow, ONNX through ONNX Runtime and the runtime's Policy.step,
each TFLite variant through tf.lite.Interpreter) and prints a Markdown table.
"""

import argparse
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf_export.writers import FILE_NAMES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('folder', help='output folder of scripts/export.py')
    parser.add_argument('--steps', type=int, default=1000, help='timed steps per engine')
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads of every engine')
    parser.add_argument('--json', help='also write the rows to this JSON file')
    args = parser.parse_args(argv)
    paths = [
        os.path.join(args.folder, name)
        for name in FILE_NAMES.values()
        if os.path.exists(os.path.join(args.folder, name + '.json'))
    ]
    if not paths:
        sys.exit(f'no exported models in {args.folder} (run scripts/export.py first)')
    from dreamer_tf.fileio import write_json
    from dreamer_tf_export.benchmark import benchmark, set_tf_threads

    set_tf_threads(args.threads)
    rows = benchmark(paths, args.steps, args.warmup, args.threads)
    print('| engine | model | size (MB) | median (ms) | p99 (ms) |\n|---|---|---|---|---|')
    for row in rows:
        print(
            f'| {row["engine"]} | {row["model"]} | {row["size_bytes"] / 1e6:.2f} '
            f'| {row["median_ms"]:.3f} | {row["p99_ms"]:.3f} |'
        )
    if args.json:
        write_json(args.json, rows)


if __name__ == '__main__':
    main()
