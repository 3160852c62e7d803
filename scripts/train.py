"""Train an agent from named presets: `python scripts/train.py --configs dreamerv3 dmc_proprio
--task dmc_cartpole_balance --logdir runs/cartpole --seed 0`. Any key of configs.yaml can be
overridden as a dotted flag, e.g. `--run.steps 5e4 --run.train_ratio 64`."""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.config import ConfigError, parse_args  # noqa: E402


def main(argv=None):
    try:
        config = parse_args(argv)
    except ConfigError as error:
        sys.exit(f'config error: {error}')
    from dreamer_tf.envs import TaskError
    from dreamer_tf.run.loop import CheckpointError, train

    try:
        train(config)
    except ConfigError as error:
        sys.exit(f'config error: {error}')
    except (TaskError, CheckpointError) as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    main()
