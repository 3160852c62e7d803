"""Train and evaluate under a paper's protocol and report against its table:
`python scripts/reproduce.py --help`, the same as `dreamer-tf reproduce`
(dreamer_tf/cli/reproduce.py)."""

from dreamer_tf.cli.reproduce import main

if __name__ == '__main__':
    main()
