"""Run an exported policy in its env with the runtime only (no TensorFlow in the policy step).

    python scripts/serve.py export/policy.onnx --episodes 5     # or export/policy.tflite

The env is rebuilt from the metadata beside the model (the task and env
settings it was trained with); the default seed is the run's evaluation seed.
"""

import sys

from dreamer_tf.envs import make_env
from dreamer_tf_runtime import MetadataError, Policy, run_episodes
from dreamer_tf_runtime.serve import parse, report


def main(argv=None):
    args = parse(argv, __doc__.split('\n')[0])
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
    report(args.model, meta, seed, returns)
    return returns


if __name__ == '__main__':
    main()
