"""Learning curves of run directories: mean and spread over seeds, one panel per task.

  python scripts/plot.py runs/v3_cartpole_s0 runs/v3_cartpole_s1 --out curves.png
  python scripts/plot.py runs/ --metric episode_return --out train_returns.png

Each argument is a run directory (with config.yaml and metrics.jsonl) or a folder
of them. Runs with the same algorithm and task are seeds of one curve.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from dreamer_tf.fileio import read_jsonl
from dreamer_tf.reproduce import plots
from dreamer_tf.reproduce.runs import RunError, find_runs


def curve(run, metric):
    """(steps, values) of `metric` in the run's metrics.jsonl; the last value per step wins."""
    latest = {}
    for record in read_jsonl(run.path / 'metrics.jsonl'):
        if metric in record and 'step' in record:
            latest[int(record['step'])] = float(record[metric])
    steps = sorted(latest)
    return steps, [latest[s] for s in steps]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', type=Path, help='run directories or folders of runs')
    parser.add_argument('--metric', default='eval_return', help='a key of metrics.jsonl')
    parser.add_argument('--out', type=Path, default=Path('curves.png'), help='PNG to write')
    parser.add_argument('--title')
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.runs)
    except RunError as error:
        sys.exit(f'error: {error}')
    groups = defaultdict(lambda: defaultdict(list))
    for run in runs:
        steps, values = curve(run, args.metric)
        if steps:
            groups[run.task][run.algo].append((steps, values))
    if not groups:
        found = sorted({key for run in runs for r in read_jsonl(run.path / 'metrics.jsonl')
                        for key in r})
        sys.exit(f'error: no run has {args.metric!r} in metrics.jsonl '
                 f'({len(runs)} runs; keys found: {", ".join(found) or "none"})')
    panels = [
        plots.Panel(task, [plots.Series(algo, curves) for algo, curves in sorted(algos.items())])
        for task, algos in sorted(groups.items())
    ]
    plots.plot(args.out, panels, ylabel=args.metric.replace('_', ' '), title=args.title)
    print(f'Wrote {args.out} ({len(runs)} runs, {len(panels)} tasks)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
