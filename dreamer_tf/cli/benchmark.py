"""Benchmark the compiled update and the policy step of presets, side by side in one run.

Each (preset, precision, XLA) row runs in its own process, so that its peak
memory is its own and no compiled program or thread pool carries over.

  python scripts/benchmark.py --configs dreamerv3,xs dreamerv3,s --obs vector:17 --act 6
  python scripts/benchmark.py --configs dreamerv1 --obs image:64x64x3 --act 6 --jit off on
  python scripts/benchmark.py --configs dreamerv3,s --precision 32 bf16 --json speed.json

Columns: s/update (median after warm-up), updates/s, replayed env steps/s,
GFLOP of one update (matmuls and convolutions counted from the graph),
achieved GFLOP/s, the roofline time (GFLOP / measured matmul peak) and the
fraction of it reached, input wait per update when batches come from a
filled replay through tf.data, policy-step latency for a batch of N envs
(median and p99), and the process's peak resident memory. `--profile N` adds,
per row, the N op types an update spends most time in (TF profiler, op time
summed over threads).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.fileio import write_json  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--configs',
        nargs='+',
        default=['dreamerv3,xs'],
        help='one entry per preset: its config blocks joined by commas',
    )
    parser.add_argument('--obs', default='vector:17', help="'vector:D', 'image:HxWxC' or both")
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument('--discrete', type=int, help='number of discrete actions')
    actions.add_argument('--act', type=int, default=6, help='continuous action dimension')
    parser.add_argument('--jit', nargs='+', default=['off', 'on'], choices=['off', 'on'])
    parser.add_argument('--precision', nargs='+', default=['32'], choices=['32', '16', 'bf16'])
    parser.add_argument('--batch', type=int, help='override run.batch_size')
    parser.add_argument('--length', type=int, help='override run.batch_length')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--envs', type=int, nargs='+', default=[1, 8], help='policy batch sizes')
    parser.add_argument(
        '--profile', type=int, default=0, metavar='N',
        help='also print the N op types the update spends most time in (TF profiler; '
        'an XLA-compiled update shows as one entry)')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--row', help=argparse.SUPPRESS)  # internal: one row, in a child process
    args = parser.parse_args(argv)
    if args.row:
        print('ROW ' + json.dumps(measure_row(json.loads(args.row))), flush=True)
        return

    peaks = {p: _peak(p) for p in args.precision}
    for precision, peak in peaks.items():
        print(f'matmul peak, precision {precision}: {peak / 1e9:.0f} GFLOP/s', flush=True)
    rows = []
    for configs in args.configs:
        for precision in args.precision:
            for jit in args.jit:
                spec = {
                    'configs': configs.split(','),
                    'obs': args.obs,
                    'discrete': args.discrete,
                    'act': args.act,
                    'jit': jit,
                    'precision': precision,
                    'batch': args.batch,
                    'length': args.length,
                    'repeats': args.repeats,
                    'envs': args.envs,
                    'profile': args.profile,
                }
                row = _run_child(spec)
                row['roofline_s'] = row['gflop'] * 1e9 / peaks[precision]
                row['roofline_fraction'] = row['roofline_s'] / row['update_s']
                rows.append(row)
                print(_format(row), flush=True)
    print()
    print(table(rows, args.envs))
    for row in rows:
        if 'op_profile' in row:
            print()
            print(profile_table(row, args.profile))
    if args.json:
        write_json(args.json, {'machine': machine(), 'matmul_peak_flops': peaks, 'rows': rows})


def measure_row(spec):
    """Runs in the child process: every measurement of one preset/precision/XLA row."""
    from dreamer_tf.config import load_config
    from dreamer_tf.diagnostics import benchmark
    from dreamer_tf.envs.base import ActSpace

    overrides = {'jit': spec['jit'], 'precision': spec['precision']}
    if spec['batch']:
        overrides['run.batch_size'] = spec['batch']
    if spec['length']:
        overrides['run.batch_length'] = spec['length']
    config = load_config(spec['configs'], overrides)
    obs_space = benchmark.parse_obs(spec['obs'])
    act_space = ActSpace(bool(spec['discrete']), spec['discrete'] or spec['act'])
    agent, batch = benchmark.build(config, obs_space, act_space)
    load_before = os.getloadavg()[0]
    timing = benchmark.time_update(agent, batch, spec['repeats'])
    flops = benchmark.graph_flops(agent.update, batch, agent.rng.make_seeds(1)[:, 0])
    wait = benchmark.input_wait(agent, obs_space, act_space, config.run)
    steps = config.run.batch_size * config.run.batch_length
    row = {
        'configs': ' '.join(spec['configs']),
        'obs': spec['obs'],
        'batch': f'{config.run.batch_size}x{config.run.batch_length}',
        'precision': spec['precision'],
        'jit': spec['jit'],
        # Load average around the timing: other processes sharing the CPU slow it.
        'load_avg': [load_before, os.getloadavg()[0]],
        'update_s': timing['median_s'],
        'update_times_s': timing['times_s'],
        'warmup_s': timing['warmup_s'],
        'updates_per_s': 1 / timing['median_s'],
        'replayed_steps_per_s': steps / timing['median_s'],
        'gflop': flops / 1e9,
        'achieved_gflops': flops / 1e9 / timing['median_s'],
        'input_wait_ms': 1e3 * wait,
        'replay_bytes_per_step': benchmark.replay_bytes_per_step(obs_space, act_space),
    }
    for envs in spec['envs']:
        median, p99 = benchmark.policy_latency(agent, obs_space, envs)
        row[f'policy_ms_{envs}'] = 1e3 * median
        row[f'policy_p99_ms_{envs}'] = 1e3 * p99
    if spec['profile']:
        row['op_profile'] = benchmark.op_profile(agent.train, batch)
    # ru_maxrss is in KiB on Linux.
    row['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def _run_child(spec):
    command = [sys.executable, '-m', 'dreamer_tf.cli.benchmark', '--row', json.dumps(spec)]
    result = subprocess.run(command, capture_output=True, text=True)
    rows = [line[4:] for line in result.stdout.splitlines() if line.startswith('ROW ')]
    if result.returncode or not rows:
        raise SystemExit(
            f'benchmark row {spec["configs"]} precision {spec["precision"]} XLA {spec["jit"]} '
            f'failed (exit {result.returncode}):\n{result.stderr[-3000:]}'
        )
    return json.loads(rows[0])


def _peak(precision):
    from dreamer_tf.agent import PRECISIONS
    from dreamer_tf.diagnostics.benchmark import matmul_peak

    return matmul_peak(PRECISIONS[precision])


def _format(row):
    return (
        f'{row["configs"]:>14} | {row["obs"]:>10} | {row["batch"]:>6} | {row["precision"]:>4} | '
        f'XLA {row["jit"]:>3} | {row["update_s"]:.3f} s/update | '
        f'{row["replayed_steps_per_s"]:.0f} steps/s | {row["gflop"]:.3g} GFLOP | '
        f'{row["roofline_fraction"]:.0%} of roofline | warm-up {row["warmup_s"]:.0f} s'
    )


def table(rows, envs):
    """A markdown table of the rows, plus speed ratios of XLA on vs off."""
    head = [
        'preset', 'obs', 'batch', 'precision', 'XLA', 's/update', 'updates/s', 'replayed steps/s',
        'GFLOP', 'GFLOP/s', 'roofline s', 'of roofline', 'input wait ms', 'replay B/step',
        *(f'policy ms N={n} (p99)' for n in envs), 'peak RSS GiB', 'warm-up s', 'load avg',
    ]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [
            r['configs'], r['obs'], r['batch'], r['precision'], r['jit'],
            f'{r["update_s"]:.3f}', f'{r["updates_per_s"]:.2f}',
            f'{r["replayed_steps_per_s"]:.0f}', f"{r['gflop']:.3g}",
            f'{r["achieved_gflops"]:.0f}', f'{r["roofline_s"]:.2f}',
            f'{r["roofline_fraction"]:.0%}', f'{r["input_wait_ms"]:.1f}',
            f'{r["replay_bytes_per_step"]:.0f}',
            *(f'{r[f"policy_ms_{n}"]:.2f} ({r[f"policy_p99_ms_{n}"]:.2f})' for n in envs),
            f'{r["peak_rss_gib"]:.2f}', f'{r["warmup_s"]:.0f}',
            '{:.1f}-{:.1f}'.format(*r['load_avg']),
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    ratios = []
    for r in rows:
        if r['jit'] != 'on':
            continue
        for base in rows:
            same = all(base[k] == r[k] for k in ('configs', 'obs', 'batch', 'precision'))
            if same and base['jit'] == 'off':
                ratios.append(
                    f'{r["configs"]} ({r["precision"]}): XLA on runs at '
                    f'{base["update_s"] / r["update_s"]:.2f}x the speed of XLA off'
                )
    return '\n'.join(lines + [''] + ratios)


def profile_table(row, top):
    """The `top` op types of one row's update by time, and their share of all op time."""
    times = row['op_profile']
    total = sum(times.values())
    lines = [
        f'{row["configs"]} ({row["precision"]}, XLA {row["jit"]}): op time per update '
        f'summed over threads {total:.2f} s, wall {row["update_s"]:.2f} s',
        '| op type | s/update | share |',
        '|---|---|---|',
    ]
    for name, seconds in list(times.items())[:top]:
        lines.append(f'| {name} | {seconds:.3f} | {seconds / total:.0%} |')
    return '\n'.join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as file:
            cpu = next(line.split(':', 1)[1].strip() for line in file if 'model name' in line)
    except (OSError, StopIteration):
        pass
    return {'cpu': cpu, 'cores': os.cpu_count(), 'python': platform.python_version(),
            'time': time.strftime('%Y-%m-%d %H:%M:%S')}


if __name__ == '__main__':
    main()
