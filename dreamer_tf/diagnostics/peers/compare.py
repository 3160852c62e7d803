"""Side-by-side speed of DreamerV3 updates: this project's against the authors' JAX code
(PyPI `dreamerv3`) and sheeprl's PyTorch port, at the same model size, on one machine.

Each system runs in a worker process of its own virtual environment (`protocol.py`):
`ours` (TensorFlow, this environment), `ours_hlo` (our update exported as StableHLO, run
by jaxlib in the authors' environment: for GPU machines without TensorFlow), `authors`
and `sheeprl`. All workers of one combination (size, observation, precision) are built
and warmed up first; then every round asks each in turn, the order rotating, for
`--updates` timed updates while the others wait idle, so that slow drifts of a shared
machine hit all systems alike. Standard library only.

  python dreamer_tf/diagnostics/peers/compare.py setup --venvs ~/peers
  python dreamer_tf/diagnostics/peers/compare.py run --venvs ~/peers --size s \\
      --obs vector:17 image:64x64x3 --precision 32 bf16 --rounds 5 --updates 3
  # a GPU machine with JAX and no TensorFlow: export here, run there
  python dreamer_tf/diagnostics/peers/compare.py export --hlo hlo --size s --obs vector:17
  python dreamer_tf/diagnostics/peers/compare.py run --systems ours_hlo authors \\
      --hlo hlo --platform gpu --size s --obs vector:17
  # the element-wise kernels of TensorFlow (here) and PyTorch (sheeprl's environment)
  python dreamer_tf/diagnostics/peers/compare.py kernels --venvs ~/peers
"""

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import protocol

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..', '..'))
# system -> (worker script, the virtual environment it runs in; None: this one)
SYSTEMS = {
    'ours': ('ours.py', None),
    'ours_hlo': ('ours_hlo.py', 'authors'),
    'authors': ('authors.py', 'authors'),
    'sheeprl': ('sheeprl_worker.py', 'sheeprl'),
}
# How records name each system.
TITLES = {'ours': 'ours (TensorFlow)', 'ours_hlo': 'ours (exported, jaxlib)',
          'authors': "the authors' dreamerv3 1.5.0", 'sheeprl': "sheeprl's 0.8.4"}
VENVS = os.path.join(os.path.expanduser('~'), '.cache', 'dreamer_tf', 'peers')


def main(argv=None):
    args = arguments().parse_args(argv)
    if getattr(args, 'record', None) and not args.machine:
        raise SystemExit('--record needs --machine: the machine, in words')
    if args.command == 'setup':
        setup(args)
    elif args.command == 'export':
        export(args)
    elif args.command == 'kernels':
        rows = kernels(args)
        print(kernel_table(rows))
        if args.record:
            write_atomic(args.record, kernel_record(args, argv, rows))
    else:
        rows = run(args)
        print(table(rows))
        if args.json:
            write_atomic(args.json, json.dumps(rows, indent=1))
        if args.record:
            write_atomic(args.record, speed_record(args, argv, rows))


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    setup_ = commands.add_parser('setup', help="create the peers' virtual environments")
    setup_.add_argument('--systems', nargs='+', default=['authors', 'sheeprl'],
                        choices=['authors', 'sheeprl'])
    for command in (setup_, commands.add_parser('export', help='export our updates for '
                                                'ours_hlo (needs TensorFlow)'),
                    commands.add_parser('run', help='time the systems side by side')):
        command.add_argument('--venvs', default=VENVS,
                             help=f"the peers' virtual environments (default {VENVS})")
        if command is setup_:
            continue
        command.add_argument('--size', nargs='+', default=['s'], choices=('xs', 's', 'm'))
        command.add_argument('--obs', nargs='+', default=['vector:17'],
                             help="'vector:D' and/or 'image:HxWxC'")
        command.add_argument('--precision', nargs='+', default=['32'], choices=('32', 'bf16'))
        command.add_argument('--act', type=int, default=6, help='continuous action dims')
        command.add_argument('--batch', type=int, default=protocol.BATCH)
        command.add_argument('--length', type=int, default=protocol.LENGTH)
        command.add_argument('--hlo', default='hlo', help='the folder of exported updates')
    kernels_ = commands.add_parser('kernels', help="element-wise kernel speed of TensorFlow "
                                   "(this environment) and PyTorch (sheeprl's)")
    kernels_.add_argument('--venvs', default=VENVS,
                          help=f"the peers' virtual environments (default {VENVS})")
    kernels_.add_argument('--rounds', type=int, default=3, help='alternations of the two')
    kernels_.add_argument('--record', help='also write a speed record (results/speed/)')
    kernels_.add_argument('--machine', default='', help="the record's machine, in words")
    run_ = commands.choices['run']
    run_.add_argument('--systems', nargs='+', default=['ours', 'authors', 'sheeprl'],
                      choices=list(SYSTEMS))
    run_.add_argument('--python', nargs='+', default=[], metavar='SYSTEM=PATH',
                      help="a system's interpreter instead of its --venvs one, e.g. "
                      'authors=python3 on a machine whose own JAX runs it')
    run_.add_argument('--platform', choices=('cpu', 'gpu'), default='cpu')
    run_.add_argument('--rounds', type=int, default=5, help='rounds over all systems')
    run_.add_argument('--updates', type=int, default=3, help='timed updates per turn')
    run_.add_argument('--warmup', type=int, default=2, help='updates before timing')
    run_.add_argument('--json', help='also write the rows to this file')
    run_.add_argument('--record', help='also write them as a speed record (results/speed/)')
    run_.add_argument('--machine', default='', help="the record's machine, in words")
    return parser


def setup(args):
    """One virtual environment per peer, from its pinned requirements file."""
    for system in args.systems:
        venv = os.path.join(args.venvs, system)
        requirements = os.path.join(HERE, f'{system}-requirements.txt')
        print(f'{system}: {venv} from {requirements}', flush=True)
        subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
        # Each file pins every package its worker imports (authors': dreamerv3 1.5.0 declares
        # gym 0.19, which no longer builds, and TensorFlow, which its agent never imports).
        subprocess.run([python_of(venv), '-m', 'pip', 'install', '-q', '--no-deps', '-r',
                        requirements],
                       check=True)


def export(args):
    """Our update of every combination as StableHLO in `--hlo`, for the ours_hlo worker."""
    for size, obs, precision in combinations(args):
        name = protocol.combination(argparse.Namespace(size=size, obs=obs, precision=precision))
        block = 'dmc_vision' if obs.startswith('image') else 'dmc_proprio'
        subprocess.run([
            sys.executable, os.path.join(ROOT, 'scripts', 'export_update.py'),
            '--configs', 'dreamerv3', size, block, '--obs', obs, '--act', str(args.act),
            '--precision', precision, '--batch', str(args.batch), '--length', str(args.length),
            '--values', 'stats', '--out', os.path.join(args.hlo, name)], check=True)


def combinations(args):
    return list(itertools.product(args.size, args.obs, args.precision))


def run(args):
    """Every combination's systems, interleaved round by round; one row per system."""
    rows = []
    for size, obs, precision in combinations(args):
        print(f'== size {size}, {obs}, precision {precision}', flush=True)
        workers = {}
        try:
            for system in args.systems:
                workers[system] = Worker(system, args, size, obs, precision)
            ready = {s: w for s, w in workers.items() if w.ready is not None}
            times = {system: [] for system in ready}
            for round_ in range(args.rounds):
                shift = round_ % max(len(ready), 1)
                for system in list(ready)[shift:] + list(ready)[:shift]:
                    times[system] += ready[system].time(args.updates)
                print(f'round {round_ + 1}: ' + ', '.join(
                    f'{s} {statistics.median(t):.3f}s' for s, t in times.items()), flush=True)
        finally:
            for worker in workers.values():
                worker.close()
        rows += combination_rows(args, workers, times, size, obs, precision)
    return rows


def combination_rows(args, workers, times, size, obs, precision):
    ours = times.get('ours') or times.get('ours_hlo')
    rows = []
    for system, worker in workers.items():
        row = {'size': size, 'obs': obs, 'precision': precision, 'platform': args.platform,
               'batch': f'{args.batch}x{args.length}', 'system': system}
        if worker.ready is None:
            rows.append({**row, 'error': worker.error})
            continue
        median = statistics.median(times[system])
        rows.append({
            **row, 'params': worker.ready['params']['total'], 'median_s': median,
            'min_s': min(times[system]), 'times_s': times[system],
            'warmup_s': worker.ready['warmup_s'],
            'ours_speedup': median / statistics.median(ours) if ours else None,
            'info': {k: v for k, v in worker.ready.items() if k not in ('ready', 'warmup_s')}})
    return rows


class Worker:
    """One system's worker process; `ready` is its first message, or None with `error`."""

    def __init__(self, system, args, size, obs, precision):
        script, venv = SYSTEMS[system]
        python = dict(item.split('=', 1) for item in args.python).get(system) or (
            python_of(os.path.join(args.venvs, venv)) if venv else sys.executable)
        command = [python, os.path.join(HERE, script), '--size', size, '--obs', obs,
                   '--act', str(args.act), '--precision', precision,
                   '--platform', args.platform, '--batch', str(args.batch),
                   '--length', str(args.length), '--warmup', str(args.warmup)]
        if system == 'ours_hlo':
            command += ['--hlo', args.hlo]
        self.system, self.ready, self.error = system, None, None
        self.log = tempfile.TemporaryFile('w+')
        if not shutil.which(python):
            self.proc, self.error = None, f'{python} not found: run `compare.py setup`'
            print(f'{system}: {self.error}', flush=True)
            return
        start = time.perf_counter()
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=worker_env())
        self.ready = self._receive()
        if self.ready is None:
            self.error = self._tail()
            print(f'{system} failed to start:\n{self.error}', flush=True)
        else:
            print(f'{system}: ready in {time.perf_counter() - start:.0f}s, '
                  f'{self.ready["params"]["total"]:,} parameters', flush=True)

    def time(self, count):
        self.proc.stdin.write(f'time {count}\n')
        self.proc.stdin.flush()
        message = self._receive()
        if message is None:
            raise RuntimeError(f'{self.system} stopped while timing: {self._tail()}')
        return message['times_s']

    def _receive(self):
        for line in self.proc.stdout:
            if line.startswith(protocol.PREFIX):
                return json.loads(line[len(protocol.PREFIX):])
        return None

    def _tail(self):
        self.log.seek(0)
        return self.log.read()[-2000:]

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.log.close()


def worker_env():
    """The workers' environment: ours finds this checkout, no worker's library logs."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, env.get('PYTHONPATH')]))
    return env


def python_of(venv):
    return os.path.join(venv, 'Scripts' if os.name == 'nt' else 'bin', 'python')


def table(rows):
    lines = [f'{"size":4} {"obs":14} {"prec":4} {"system":9} {"params":>11} {"median s":>9} '
             f'{"min s":>8} {"ours x":>7}']
    for r in rows:
        if 'error' in r:
            lines.append(f'{r["size"]:4} {r["obs"]:14} {r["precision"]:4} {r["system"]:9} '
                         'failed (see above)')
            continue
        speedup = f'{r["ours_speedup"]:.2f}' if r['ours_speedup'] else '-'
        lines.append(f'{r["size"]:4} {r["obs"]:14} {r["precision"]:4} {r["system"]:9} '
                     f'{r["params"]:11,} {r["median_s"]:9.3f} {r["min_s"]:8.3f} {speedup:>7}')
    return '\n'.join(lines)


def speed_record(args, argv, rows):
    """The rows as a speed record (dreamer_tf/results.py)."""
    columns = ['size', 'obs', 'precision', 'system', 'parameters', 's/update (median)',
               's/update (min)', 'system / ours']
    body = [[r['size'], r['obs'], r['precision'], r['system'], r['params'],
             round(r['median_s'], 4), round(r['min_s'], 4),
             round(r['ours_speedup'], 2) if r['ours_speedup'] else None]
            for r in rows if 'error' not in r]
    title = (f'DreamerV3 update on {args.platform.upper()}, side by side: '
             + ', '.join(TITLES[system] for system in args.systems))
    return record_text(args, argv, title, columns, body)


def record_text(args, argv, title, columns, body):
    """A speed record in YAML written by hand: this module runs without the project's
    dependencies. JSON strings are YAML scalars."""
    commit = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                            capture_output=True, text=True).stdout.strip()
    command = ' '.join(['python dreamer_tf/diagnostics/peers/compare.py',
                        *(sys.argv[1:] if argv is None else argv)])
    lines = [f'name: {json.dumps(os.path.splitext(os.path.basename(args.record))[0])}',
             f'command: {json.dumps(command)}', f'commit: {json.dumps(commit or "unknown")}',
             f'machine: {json.dumps(args.machine)}', f'title: {json.dumps(title)}',
             f'columns: {json.dumps(columns)}', 'rows:']
    lines += ['- ' + json.dumps(row) for row in body]
    return '\n'.join(lines) + '\n'


def kernels(args):
    """kernels.py under TensorFlow and under PyTorch, alternated `--rounds` times; one row
    per op and dtype with each framework's median milliseconds over the rounds."""
    commands = {
        'tensorflow': [sys.executable],
        'torch': [python_of(os.path.join(args.venvs, 'sheeprl'))],
    }
    times = {}
    for round_ in range(args.rounds):
        for framework, python in commands.items():
            out = subprocess.run(
                python + [os.path.join(HERE, 'kernels.py'), '--framework', framework],
                capture_output=True, text=True, env=worker_env(), check=True).stdout
            for line in out.splitlines():
                row = json.loads(line)
                times.setdefault((row['op'], row['dtype']), {}).setdefault(
                    framework, []).append(row['ms'])
        print(f'round {round_ + 1} done', flush=True)
    return [{'op': op, 'dtype': dtype,
             **{f'{fw}_ms': statistics.median(ms) for fw, ms in by_framework.items()}}
            for (op, dtype), by_framework in times.items()]


def kernel_table(rows):
    lines = [f'{"op":8} {"dtype":9} {"TF ms":>7} {"torch ms":>8} {"TF / torch":>10}']
    for r in rows:
        lines.append(f'{r["op"]:8} {r["dtype"]:9} {r["tensorflow_ms"]:7.3f} '
                     f'{r["torch_ms"]:8.3f} {r["tensorflow_ms"] / r["torch_ms"]:10.2f}')
    return '\n'.join(lines)


def kernel_record(args, argv, rows):
    import kernels as kernels_module

    shape = f'{kernels_module.ROWS}x{kernels_module.COLS}'
    columns = ['op', 'dtype', 'TensorFlow ms', 'PyTorch ms', 'TensorFlow / PyTorch']
    body = [[r['op'], r['dtype'], round(r['tensorflow_ms'], 3), round(r['torch_ms'], 3),
             round(r['tensorflow_ms'] / r['torch_ms'], 2)] for r in rows]
    title = f'Element-wise kernels on a {shape} tensor, TensorFlow against PyTorch'
    return record_text(args, argv, title, columns, body)


def write_atomic(path, text):
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == '__main__':
    main()
