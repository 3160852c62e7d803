"""Look inside a trained run: `python scripts/diagnose.py --help`, the same as
`dreamer-tf diagnose` (dreamer_tf/cli/diagnose.py)."""

from dreamer_tf.cli.diagnose import main

if __name__ == '__main__':
    main()
