"""Evaluate a run's latest checkpoint and record it for a benchmark checkpoint.

The training loop evaluates every run.eval_every steps counted from the end of
prefill, which rarely lands on a benchmark checkpoint such as 100k. The
reproduction trains to each checkpoint (`--run.steps`), the loop saves a
checkpoint when it stops there, and this module scores that checkpoint with the
loop's own evaluation (deterministic policy, eval envs seeded from seed + 10000):
`python -m dreamer_tf.reproduce.evaluate RUN_DIR [--checkpoint STEP] [--episodes N]`.
The result goes to RUN_DIR/checkpoint_evals.jsonl. Unlike the rest of the
package, this imports TensorFlow.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run_dir', type=Path)
    parser.add_argument('--checkpoint', type=int,
                        help='the benchmark checkpoint this evaluation stands for (default: '
                        "the checkpoint's env step)")
    parser.add_argument('--episodes', type=int, default=0,
                        help="evaluation episodes (default: the run's run.eval_episodes)")
    args = parser.parse_args(argv)
    config_path = args.run_dir / 'config.yaml'
    if not config_path.is_file():
        sys.exit(f'{args.run_dir} is no run directory: it has no config.yaml')
    if args.episodes < 0:
        sys.exit(f'--episodes must not be negative, got {args.episodes}')

    from dreamer_tf.envs.process import keep_gl_out_of_this_process

    keep_gl_out_of_this_process()
    from dreamer_tf.agent import Agent
    from dreamer_tf.config import Config, ConfigError, load_config
    from dreamer_tf.reproduce.runs import record_checkpoint_eval
    from dreamer_tf.run.loop import Checkpointer, Counters, envs_from_config, evaluate

    saved = Config.load(config_path)
    try:
        # On top of `defaults`, so that keys added to configs.yaml after the run was
        # made take their defaults, as they would when the run is resumed.
        config = load_config([], saved.to_dict())
    except ConfigError as error:
        sys.exit(f'{config_path}: {error}')
    added = sorted(set(config.flat()) - set(saved.flat()))
    if added:
        print(f'Not in {config_path}, taken from defaults: {", ".join(added)}', flush=True)
    episodes = args.episodes or config.run.eval_episodes
    # The eval envs of the training loop: same count and seeds.
    envs = envs_from_config(config, min(config.env.envs, episodes), config.seed + 10_000,
                            mode='eval')
    try:
        agent = Agent(envs.obs_space, envs.act_space, config)
        counters = Counters()
        checkpointer = Checkpointer(args.run_dir / 'checkpoints', float('inf'), agent=agent,
                                    counters=counters)
        if not checkpointer.restore():
            sys.exit(f'{args.run_dir} has no checkpoint to evaluate')
        step = int(counters.env_steps.numpy())
        returns = [result['return'] for result in evaluate(agent, envs, episodes)]
    finally:
        envs.close()
    if args.checkpoint is not None and step < args.checkpoint:
        sys.exit(f'{args.run_dir}: the checkpoint is at {step:,} env steps, before '
                 f'{args.checkpoint:,}: training stopped early')
    record_checkpoint_eval(args.run_dir, step, returns, args.checkpoint)
    print(f'{args.run_dir}: {episodes} episodes at {step:,} env steps, '
          f'return {sum(returns) / len(returns):.1f}', flush=True)


if __name__ == '__main__':
    main()
