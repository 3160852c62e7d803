"""Plot learning curves of runs: `python scripts/plot.py --help`, the same as `dreamer-tf plot`
(dreamer_tf/cli/plot.py)."""

from dreamer_tf.cli.plot import main

if __name__ == '__main__':
    main()
