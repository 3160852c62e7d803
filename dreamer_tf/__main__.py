"""`python -m dreamer_tf <command>`: the `dreamer-tf` command (dreamer_tf/cli)."""

import sys

from dreamer_tf.cli import main

if __name__ == '__main__':
    sys.exit(main())
