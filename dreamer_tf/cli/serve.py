"""Run an exported policy in its env with the runtime only (no TensorFlow in the policy step).

    python scripts/serve.py export/policy.onnx --episodes 5     # or export/policy.tflite

The env is rebuilt from the metadata beside the model (the task and env
settings it was trained with); the default seed is the run's evaluation seed.
"""

import argparse
import json
import sys

from dreamer_tf.envs import make_env
from dreamer_tf_runtime import MetadataError, Policy, run_episodes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='the exported .onnx or .tflite file (its .json beside it)')
    parser.add_argument('--episodes', type=int, default=1)
    parser.add_argument('--seed', type=int, help="env seed (default: the run's eval seed)")
    parser.add_argument('--policy-seed', type=int, default=0, help='noise of a stochastic export')
    parser.add_argument('--threads', type=int, help='threads of ONNX Runtime or LiteRT')
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error('--episodes must be at least 1')
    try:
        policy = Policy(args.model, seed=args.policy_seed, threads=args.threads,
                        observations='model')
    except (MetadataError, FileNotFoundError) as error:
        sys.exit(f'cannot load {args.model}: {error}')
    meta = policy.meta
    seed = meta['eval_seed'] if args.seed is None else args.seed
    env = make_env(**{**meta['env'], 'size': tuple(meta['env']['size'])}, seed=seed)
    try:
        returns = run_episodes(policy, env, args.episodes)
    finally:
        env.close()
    print(
        json.dumps(
            {
                'model': args.model,
                'task': meta['task'],
                'mode': meta['mode'],
                'seed': seed,
                'returns': returns,
                'mean_return': sum(returns) / len(returns),
            }
        )
    )
    return returns


if __name__ == '__main__':
    main()
