"""Benchmark the update and the policy on synthetic batches:
`python scripts/benchmark.py --help`, the same as `dreamer-tf benchmark`
(dreamer_tf/cli/benchmark.py)."""

from dreamer_tf.cli.benchmark import main

if __name__ == '__main__':
    main()
