"""Time the compiled update of a preset on synthetic batches, XLA off vs on, in one run.

  python scripts/benchmark.py --configs dreamerv3 xs --obs vector:5 --discrete 2 --jit off on
  python scripts/benchmark.py --configs dreamerv3 s --obs vector:17 --act 6 --json out.json
"""

import argparse
import json
import os
import platform

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.benchmark import parse_obs, time_update  # noqa: E402
from dreamer_tf.config import load_config  # noqa: E402
from dreamer_tf.envs.base import ActSpace  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='+', default=['dreamerv3', 'xs'])
    parser.add_argument('--obs', default='vector:5')
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument('--discrete', type=int, help='number of discrete actions')
    actions.add_argument('--act', type=int, default=1, help='continuous action dimension')
    parser.add_argument('--jit', nargs='+', default=['off', 'on'], choices=['off', 'on'])
    parser.add_argument('--precision', nargs='+', default=['32'], choices=['32', '16', 'bf16'])
    parser.add_argument('--batch', type=int, help='override run.batch_size')
    parser.add_argument('--length', type=int, help='override run.batch_length')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args()

    obs_space = parse_obs(args.obs)
    act_space = ActSpace(bool(args.discrete), args.discrete or args.act)
    rows = []
    for precision in args.precision:
        for jit in args.jit:
            overrides = {'jit': jit, 'precision': precision}
            if args.batch:
                overrides['run.batch_size'] = args.batch
            if args.length:
                overrides['run.batch_length'] = args.length
            config = load_config(args.configs, overrides)
            result = time_update(config, obs_space, act_space, args.repeats)
            steps = config.run.batch_size * config.run.batch_length
            rows.append({'configs': ' '.join(args.configs), 'obs': args.obs,
                         'batch': f'{config.run.batch_size}x{config.run.batch_length}',
                         'precision': precision, 'jit': jit, **result,
                         'updates_per_s': 1 / result['median_s'],
                         'replayed_steps_per_s': steps / result['median_s']})
            print(f'{rows[-1]["configs"]:>20} | {args.obs:>12} | {rows[-1]["batch"]:>6} | '
                  f'precision {precision:>4} | XLA {jit:>3} | {result["median_s"]:.3f} s/update | '
                  f'{rows[-1]["replayed_steps_per_s"]:.0f} replayed steps/s | '
                  f'first 2 calls {result["warmup_s"]:.1f} s', flush=True)
    if len(rows) > 1:
        base = rows[0]['median_s']
        for row in rows[1:]:
            print(f'{row["precision"]}/XLA {row["jit"]} vs {rows[0]["precision"]}/XLA '
                  f'{rows[0]["jit"]}: {base / row["median_s"]:.2f}x speed')
    if args.json:
        with open(args.json, 'w') as file:
            json.dump({'machine': platform.processor() or platform.machine(),
                       'cpus': os.cpu_count(), 'rows': rows}, file, indent=1)


if __name__ == '__main__':
    main()
