"""Train an agent from named presets, or resume a run:
`python scripts/train.py --help`, the same as `dreamer-tf train`
(dreamer_tf/cli/train.py)."""

from dreamer_tf.cli.train import main

if __name__ == '__main__':
    main()
