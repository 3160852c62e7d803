"""How close is a run to the paper? Train or resume runs under a benchmark's protocol,
evaluate them at the protocol's checkpoints, and report them next to the published table.

  python scripts/reproduce.py dmc_proprio100k --algo dreamerv3 \\
      --tasks cartpole_swingup reacher_easy --seeds 0 --outdir runs/repro --configs cpu
  python scripts/reproduce.py dmc_proprio100k --report-only --runs runs/* --outdir /tmp/rep

Runs go to OUTDIR/<algo>_<task>_s<seed>; calling again resumes them. The report
(report.md, curves.png) goes to OUTDIR/report unless --report-dir says otherwise.
Extra `--key value` arguments are config overrides for every run (as in train.py).
Definitions and the benchmarks: docs/reproduce.md.
"""

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from dreamer_tf import reference
from dreamer_tf.config import ConfigError, parse_args
from dreamer_tf.reproduce import launch, protocol
from dreamer_tf.reproduce.report import build
from dreamer_tf.reproduce.runs import RunError, find_runs


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=f'benchmarks: {", ".join(reference.names())}',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('benchmark', help='one of: ' + ', '.join(reference.names()))
    parser.add_argument('--algo', help='algorithm preset (required unless --report-only)')
    parser.add_argument('--tasks', nargs='+', help="reference task names, e.g. walker_walk "
                        "(default: every task with a published score of the algorithm)")
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--outdir', type=Path, required=True, help='folder of the runs')
    parser.add_argument('--configs', nargs='+', default=[],
                        help='extra configs.yaml blocks after the paper presets, e.g. cpu')
    parser.add_argument('--steps', type=int,
                        help='training budget, only for sources that do not state one')
    parser.add_argument('--runs', nargs='+', type=Path, default=[],
                        help='more run directories (or folders of runs) to report')
    parser.add_argument('--report-only', action='store_true',
                        help='train nothing; report the runs that exist')
    parser.add_argument('--report-dir', type=Path, help='default: OUTDIR/report')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands that would run, then stop')
    args, overrides = parser.parse_known_args(argv)
    return parser, args, overrides


def main(argv=None):
    parser, args, overrides = parse(sys.argv[1:] if argv is None else argv)
    try:
        benchmark = reference.load(args.benchmark)
        if not args.report_only:
            stages = plan(parser, args, overrides, benchmark)
            if args.dry_run:
                for stage in stages:
                    print(shlex.join(stage.train))
                    print(shlex.join(stage.evaluate))
                return 0
            try:
                failed = train(stages)
            except KeyboardInterrupt:
                print('Interrupted: reporting the runs as they are.', file=sys.stderr)
                failed = True
        else:
            failed = False
        runs = find_runs(([args.outdir] if args.outdir.is_dir() else []) + args.runs)
    except (reference.ReferenceDataError, ConfigError, RunError, ValueError) as error:
        sys.exit(f'error: {error}')
    if args.algo:
        runs = [run for run in runs if run.algo == args.algo]
    if args.tasks:
        names = {benchmark.task_name(task) for task in args.tasks}
        runs = [run for run in runs if run.task in names]
    if not runs:
        sys.exit(f'error: no run directories found in {args.outdir} '
                 f'{" ".join(map(str, args.runs))} for the chosen algorithm and tasks')
    command = shlex.join(['python', 'scripts/reproduce.py', *(sys.argv[1:] if argv is None
                                                               else argv)])
    path = build(benchmark, runs, args.report_dir or args.outdir / 'report', command=command)
    print(f'Report: {path}')
    return 1 if failed else 0


def plan(parser, args, overrides, benchmark):
    if not args.algo:
        parser.error('--algo is required unless --report-only')
    benchmark.check_algo(args.algo)
    tasks = args.tasks or sorted(benchmark.entry(args.algo).scores)
    launch.check_tasks(benchmark, args.algo, tasks)
    # Fail on a bad block or override now rather than in the first training process.
    parse_args(['--configs', *protocol.paper_presets(benchmark, args.algo), *args.configs,
                *overrides])
    return launch.pending(benchmark, args.algo, tasks, args.seeds, args.outdir, args.steps,
                          args.configs, overrides)


def train(stages):
    """Run the stages in order; stop at the first failure. Returns whether one failed."""
    for number, stage in enumerate(stages, 1):
        print(f'[{number}/{len(stages)}] {stage.logdir} to {stage.steps:,} env steps', flush=True)
        for command in (stage.train, stage.evaluate):
            code = _run(command)
            if code:
                print(f'error: exit status {code} from: {shlex.join(command)}\n'
                      'Reporting the runs as they are.', file=sys.stderr)
                return True
    return False


def _run(command):
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The child got the same SIGINT and saves a checkpoint before it exits.
        process.wait()
        raise


if __name__ == '__main__':
    sys.exit(main())
