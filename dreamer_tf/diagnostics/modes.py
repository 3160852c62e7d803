"""Env steps and updates per second of the training loop's modes, side by side.

    python -m dreamer_tf.diagnostics.modes --configs dreamerv3 dmc_vision cpu \\
        --task dmc_cartpole_balance --steps 4000 --ratios 32 512 --json modes.json

Each (mode, train ratio) pair trains a fresh run in its own process (`dreamer-tf train
... --run.train_ratio <ratio>`, evaluations off; mode `sync`, `async`, or `actors`: async
with `--actors` Ray actors) and is timed from its metrics.jsonl: from the first log after
prefill to the last, the env steps and updates per second of wall time, the updates at
the end, which the modes must share, and the profile: the share of wall time in each
phase of the loop (`time_*`, run/logger.py Profile), averaged over those logs. Runs
alternate mode by mode within each ratio, so that a machine's drift hits all.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from dreamer_tf.fileio import read_jsonl, write_json

MODES = ('sync', 'async', 'actors')
PHASES = ('collect', 'learn', 'update', 'housekeeping')


def mode_args(mode, actors):
    if mode == 'actors':
        return ['--run.mode', 'async', '--distribute.actors', str(actors)]
    return ['--run.mode', mode]


def measure(configs, task, mode, ratio, steps, prefill, extra=(), actors=2):
    """Trains one run and returns its rates and profile after prefill."""
    with tempfile.TemporaryDirectory() as logdir:
        command = [sys.executable, '-m', 'dreamer_tf', 'train', '--configs', *configs,
                   '--task', task, '--logdir', logdir, '--run.steps', str(steps),
                   '--run.prefill', str(prefill), '--run.train_ratio', str(ratio),
                   *mode_args(mode, actors), '--run.eval_every', '0', '--run.log_every',
                   str(max(steps // 20, 1)), *extra]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        rows = [r for r in read_jsonl(Path(logdir) / 'metrics.jsonl')
                if 'updates' in r and r['step'] > prefill]
    first, last = rows[0], rows[-1]
    seconds = last['time'] - first['time']
    profile = {phase: round(sum(r.get(f'time_{phase}', 0.0) for r in rows[1:])
                            / max(len(rows) - 1, 1), 3) for phase in PHASES}
    return {'mode': mode, 'train_ratio': ratio, 'seconds': round(seconds, 1),
            'env_steps_per_s': round((last['step'] - first['step']) / seconds, 2),
            'updates_per_s': round((last['updates'] - first['updates']) / seconds, 3),
            'updates_at_end': int(last['updates']), 'profile': profile}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--configs', nargs='+', required=True)
    parser.add_argument('--task', required=True)
    parser.add_argument('--steps', type=int, default=4000, help='env steps per run')
    parser.add_argument('--prefill', type=int, default=1000)
    parser.add_argument('--ratios', type=float, nargs='+', default=[32.0, 512.0])
    parser.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES))
    parser.add_argument('--actors', type=int, default=2, help='Ray actors of mode actors')
    parser.add_argument('--json', help='also write the rows here')
    args, extra = parser.parse_known_args(argv)
    rows = []
    print('| mode | train ratio | env steps/s | updates/s | updates at the last log | wall s '
          '| ' + ' | '.join(f'{p} share' for p in PHASES) + ' |')
    print('|---' * (6 + len(PHASES)) + '|')
    for ratio in args.ratios:
        for mode in args.modes:
            row = measure(args.configs, args.task, mode, ratio, args.steps, args.prefill, extra,
                          args.actors)
            rows.append(row)
            shares = ' | '.join(f'{row["profile"][p]:.2f}' for p in PHASES)
            print(f'| {mode} | {ratio:g} | {row["env_steps_per_s"]} | {row["updates_per_s"]} '
                  f'| {row["updates_at_end"]} | {row["seconds"]} | {shares} |', flush=True)
    if args.json:
        write_json(args.json, {'configs': args.configs, 'task': args.task, 'steps': args.steps,
                               'actors': args.actors, 'rows': rows})
    return rows


if __name__ == '__main__':
    main()
