"""How many updates a DreamerV3 critic needs to move towards a fixed return:
`python scripts/critic_speed.py --help` (dreamer_tf/diagnostics/critic_speed.py)."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.diagnostics.critic_speed import main  # noqa: E402

if __name__ == '__main__':
    main()
