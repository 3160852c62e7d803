"""Evaluate a trained run: `python scripts/eval.py --help`, the same as `dreamer-tf eval`
(dreamer_tf/cli/eval.py)."""

from dreamer_tf.cli.eval import main

if __name__ == '__main__':
    main()
