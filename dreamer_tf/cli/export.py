"""Export a trained run's policy: `python scripts/export.py --logdir runs/cartpole --out export/`.

Writes the policy step as a SavedModel, ONNX and TFLite (float32, float16,
int8) into --out, each with a metadata JSON beside it (docs/export.md).
--check compares every written model with the TensorFlow policy on a 50-step
random rollout; --episodes N compares returns of the ONNX runtime with the
TensorFlow policy on N evaluation episodes.
"""

import argparse
import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def parse(argv):
    # TensorFlow is imported inside functions only: env worker processes (a rendered
    # dm_control env for --episodes) re-import this module and must not load it.
    from dreamer_tf_export.writers import ALL, DEFAULT_OPSET

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--logdir', required=True, help='training run (config.yaml, checkpoints/)')
    parser.add_argument('--out', required=True, help='folder to write the models into')
    parser.add_argument('--checkpoint', help='checkpoint prefix (default: the latest)')
    parser.add_argument('--formats', nargs='+', default=list(ALL), choices=ALL)
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help='ONNX opset')
    parser.add_argument(
        '--stochastic', action='store_true', help='sample posterior and actor (noise inputs)'
    )
    parser.add_argument('--check', action='store_true', help='parity of each model with TF')
    parser.add_argument(
        '--episodes', type=int, default=0, help='compare returns: ONNX runtime vs TF policy'
    )
    parser.add_argument('--seed', type=int, help='env seed for --episodes (default: eval seed)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.episodes and ('onnx' not in args.formats or args.stochastic):
        sys.exit('--episodes needs a deterministic ONNX export (--formats ... onnx)')
    from dreamer_tf_export import metadata, parity, writers
    from dreamer_tf_export.checkpoint import load_run
    from dreamer_tf_export.policy import ExportError, ExportPolicy

    try:
        run = load_run(args.logdir, args.checkpoint)
        policy = ExportPolicy(run.agent, stochastic=args.stochastic)
    except ExportError as error:
        sys.exit(f'export error: {error}')
    print(
        f'Restored {run.checkpoint} ({run.config.algo}, {run.counters["env_steps"]:,} env steps).'
    )
    paths = writers.export(policy, args.out, run.describe(), args.formats, args.opset)
    for path in paths.values():
        print(f'Wrote {path} and {path}.json')
    if args.check:
        for name, path in paths.items():
            meta = metadata.read(path)
            closed = parity.check(path, meta, run.agent, policy)
            forced = parity.check(path, meta, run.agent, policy, forced=True)
            print(
                f'parity {name:15s} rollout {_format(closed)}\n{"":22s} one-step {_format(forced)}'
            )
    if args.episodes:
        from dreamer_tf_export.verify import compare_returns

        result = compare_returns(run, paths['onnx'], args.episodes, args.seed)
        print(json.dumps(result, indent=1))


def _format(errors):
    return ', '.join(f'{k} {v:.3g}' for k, v in errors.items())


if __name__ == '__main__':
    main()
