"""Evaluate a run's latest checkpoint and record it for a benchmark checkpoint.

The training loop evaluates every run.eval_every steps counted from the end of
prefill, which rarely lands on a benchmark checkpoint such as 100k. The
reproduction trains to each checkpoint (`--run.steps`), the loop saves a
checkpoint when it stops there, and this module scores that checkpoint as the
loop's own evaluation does (the run's run.eval_policy unless --policy says
otherwise, min(env.envs, episodes) eval envs seeded from seed + 10000):
`python -m dreamer_tf.reproduce.evaluate RUN_DIR [--checkpoint STEP] [--episodes N]
[--policy mode|sample]`. The result, with the policy used, goes to
RUN_DIR/checkpoint_evals.jsonl. Unlike the rest of the package, this imports
TensorFlow.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.config import EVAL_POLICIES

# Where tf.train.Checkpoint(agent=..., counters=Counters()) keeps the env step count.
ENV_STEPS = 'counters/env_steps/.ATTRIBUTES/VARIABLE_VALUE'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run_dir', type=Path)
    parser.add_argument('--checkpoint', type=int,
                        help='the benchmark checkpoint this evaluation stands for (default: '
                        "the checkpoint's env step)")
    parser.add_argument('--episodes', type=int, default=0,
                        help="evaluation episodes (default: the run's run.eval_episodes)")
    parser.add_argument('--policy', choices=EVAL_POLICIES,
                        help="evaluation policy (default: the run's run.eval_policy)")
    args = parser.parse_args(argv)
    config_path = args.run_dir / 'config.yaml'
    if not config_path.is_file():
        sys.exit(f'{args.run_dir} is no run directory: it has no config.yaml')
    if args.episodes < 0:
        sys.exit(f'--episodes must not be negative, got {args.episodes}')

    from dreamer_tf.envs.process import keep_gl_out_of_this_process

    keep_gl_out_of_this_process()
    import tensorflow as tf

    from dreamer_tf.config import Config
    from dreamer_tf.envs.from_config import LOOP_EVAL_SEED
    from dreamer_tf.reproduce.runs import record_checkpoint_eval
    from dreamer_tf.run.collect import evaluate
    from dreamer_tf.run.restore import load_run

    saved = Config.load(config_path).to_dict()
    episodes = args.episodes or saved['run']['eval_episodes']
    # A config.yaml written before env.envs existed ran one env.
    count = min(saved['env'].get('envs', 1), episodes)
    try:
        # overrides={} explicitly: load_run's default () cannot be **-unpacked.
        agent, config, envs, path = load_run(args.run_dir, count, saved['seed'] + LOOP_EVAL_SEED,
                                             overrides={})
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        sys.exit(f'{args.run_dir}: {error}')
    # load_run fills keys an older config.yaml lacks from configs.yaml: there, modes.
    policy = args.policy or config.run.eval_policy
    try:
        step = int(tf.train.load_variable(path, ENV_STEPS))
        if args.checkpoint is not None and step < args.checkpoint:
            sys.exit(f'{args.run_dir}: the checkpoint is at {step:,} env steps, before '
                     f'{args.checkpoint:,}: training stopped early')
        returns = [result['return'] for result in evaluate(agent, envs, episodes, policy)]
    finally:
        envs.close()
    record_checkpoint_eval(args.run_dir, step, returns, args.checkpoint, policy)
    print(f'{args.run_dir}: {episodes} episodes ({policy} policy) at {step:,} env steps, '
          f'return {sum(returns) / len(returns):.1f}', flush=True)


if __name__ == '__main__':
    main()
