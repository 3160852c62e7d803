"""Train an agent from named presets: `python scripts/train.py --configs dreamerv3 dmc_proprio
--task dmc_cartpole_balance --logdir runs/cartpole --seed 0`. Any key of configs.yaml can be
overridden as a dotted flag, e.g. `--run.steps 5e4 --run.train_ratio 64`. The same command
resumes the run; `--restart` moves it aside and starts afresh. `--help-config [PREFIX]` says
what each key means."""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.config import ConfigError, parse_args  # noqa: E402

RESTART = ('--restart', ('move a run found in --logdir aside to <logdir>.replaced-<time> '
                        '(nothing is deleted) and start a new one there'))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if '--help-config' in argv:
        return help_config(argv[argv.index('--help-config') + 1:])
    restart = RESTART[0] in argv
    try:
        config = parse_args([arg for arg in argv if arg != RESTART[0]], flags=[RESTART])
    except ConfigError as error:
        sys.exit(f'config error: {error}')
    from dreamer_tf.envs import TaskError
    from dreamer_tf.envs.parallel import NonFiniteError
    from dreamer_tf.run.checkpoint import CheckpointError
    from dreamer_tf.run.loop import train
    from dreamer_tf.run.rundir import RunDirError

    try:
        train(config, restart=restart)
    except ConfigError as error:
        sys.exit(f'config error: {error}')
    except (TaskError, CheckpointError, RunDirError, NonFiniteError) as error:
        sys.exit(f'error: {error}')


def help_config(rest):
    """Prints the keys under the prefix in `rest` (all keys without one) with their meanings."""
    from dreamer_tf.config_reference import text

    prefix = rest[0] if rest and not rest[0].startswith('--') else ''
    try:
        print(text(prefix))
    except ConfigError as error:
        sys.exit(f'config error: {error}')


if __name__ == '__main__':
    main()
