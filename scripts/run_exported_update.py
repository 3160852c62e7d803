"""Compile and time updates exported by scripts/export_update.py, with numpy and jaxlib only.

For machines without TensorFlow (a GPU box with JAX): each folder's StableHLO
program is compiled by jaxlib's XLA for the default backend and run on its
first device. With --check, the results of one update are compared with TF's
(reference.npz): each metric and each written variable, as the largest
relative error ‖out − ref‖ / ‖ref‖. Then `--updates` updates run back to back,
each feeding the written variables into the next (a training run's steady
state), `--repeats` times; the median time per update is reported with the
achieved TFLOP/s of the update's matmul work.

  python scripts/run_exported_update.py /tmp/v3xs --check
  python scripts/run_exported_update.py hlo/* --updates 20 --repeats 5 --json $OUT/gpu.json
"""

import argparse
import gzip
import json
import os
import re
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folders', nargs='+')
    parser.add_argument(
        '--check',
        action='store_true',
        help="compare one update with TF's (reference.npz), else with XLA's CPU backend",
    )
    parser.add_argument('--updates', type=int, default=10, help='updates per timed block')
    parser.add_argument('--repeats', type=int, default=5, help='timed blocks')
    parser.add_argument('--json', help='also write the rows to this file')
    parser.add_argument(
        '--loops',
        action='store_true',
        help='also print the work each while loop of the compiled program does per trip',
    )
    args = parser.parse_args()
    rows = []
    for folder in args.folders:
        rows.append(run(folder, args))
        # After each row, so that a run cut short keeps what it measured.
        if args.json:
            tmp = args.json + '.tmp'
            with open(tmp, 'w') as f:
                json.dump(rows, f, indent=1)
            os.replace(tmp, args.json)
    print(table(rows))


class Program:
    """An exported update compiled for `platform` (default: jax's default backend) on its
    first device, with its arguments there: `step()` runs one update and feeds the written
    variables into the next, as training does. Also used by the side-by-side worker
    dreamer_tf/diagnostics/peers/ours_hlo.py."""

    def __init__(self, folder, platform=None):
        import jax

        # The seed and the step counters are int64: keep them so on the device.
        jax.config.update('jax_enable_x64', True)
        with open(os.path.join(folder, 'manifest.json')) as f:
            self.manifest = json.load(f)
        with gzip.open(os.path.join(folder, 'update.mlir.gz'), 'rt') as f:
            self.text = f.read()
        stored = np.load(os.path.join(folder, 'inputs.npz'))
        rng = np.random.default_rng(0)
        self.host = [argument_value(i, meta, stored, rng)
                     for i, meta in enumerate(self.manifest['args'])]
        start = time.perf_counter()
        self.executable, self.device = compile_program(self.text, platform)
        self.compile_s = time.perf_counter() - start
        self.arrays = [jax.device_put(v, self.device) for v in self.host]

    def step(self):
        """One update (dispatched, not waited for); returns its metrics' device arrays."""
        count = len(self.manifest['metrics'])
        results = self.executable.execute(self.arrays)
        for j, a in enumerate(self.manifest['updates']):
            self.arrays[a] = results[count + j]
        return results[:count]


def run(folder, args):
    import jax

    program = Program(folder)
    manifest, device = program.manifest, program.device
    row = {
        'folder': folder,
        'configs': ' '.join(manifest['configs']),
        'obs': manifest['obs'],
        'batch': 'x'.join(str(d) for d in manifest['batch']),
        'precision': manifest['precision'],
        'device': f'{device.platform}:{getattr(device, "device_kind", "")}',
        'compile_s': program.compile_s,
        'gflop': manifest['gflop'],
    }
    if args.loops:
        row['loops'] = loop_work(program.executable)
        for loop in row['loops']:
            print(json.dumps(loop), flush=True)
    metrics = program.step()
    metrics = {k: float(np.asarray(m)) for k, m in zip(manifest['metrics'], metrics)}
    row['finite_metrics'] = all(np.isfinite(v) for v in metrics.values())
    row['model_loss'] = metrics.get('model_loss', float('nan'))
    if args.check:
        row.update(check(folder, manifest, program.text, program.host, program.arrays, metrics))
    times = []
    for _ in range(args.repeats):
        jax.block_until_ready(program.arrays)
        start = time.perf_counter()
        for _ in range(args.updates):
            metrics = program.step()
        jax.block_until_ready((program.arrays, metrics))
        times.append((time.perf_counter() - start) / args.updates)
    row['update_ms'] = 1e3 * float(np.median(times))
    row['update_ms_all'] = [1e3 * t for t in times]
    row['tflops'] = manifest['gflop'] / 1e3 / float(np.median(times))
    last = {k: float(np.asarray(m)) for k, m in zip(manifest['metrics'], metrics)}
    row['finite_after'] = all(np.isfinite(v) for v in last.values())
    print(json.dumps(row), flush=True)
    return row


def argument_value(i, meta, stored, rng):
    """The stored value of argument i, or one drawn: a variable from its initial value's
    mean and std, a batch entry as uniform bytes (images) or standard normal."""
    key = f'arg{i}'
    if key in stored:
        return stored[key]
    shape, dtype = tuple(meta['shape']), np.dtype(meta['dtype'])
    if 'std' not in meta:
        if dtype == np.uint8:
            return rng.integers(0, 256, shape, np.uint8)
        return rng.standard_normal(shape).astype(dtype)
    if meta['std'] == 0:
        return np.full(shape, meta['mean'], dtype)
    return (meta['mean'] + meta['std'] * rng.standard_normal(shape)).astype(dtype)


def check(folder, manifest, text, host, arrays, metrics):
    """Relative error ‖out − ref‖ / ‖ref‖ of all metrics, and of all written variables
    (each set concatenated, so that a near-zero metric cannot dominate), against TF's
    results (reference.npz) or, without them, against XLA's CPU backend on the same inputs."""
    names, written = manifest['metrics'], manifest['updates']
    path = os.path.join(folder, 'reference.npz')
    if os.path.exists(path):
        reference = np.load(path)
        ref_metrics = [reference[f'metric_{k}'] for k in names]
        ref_vars = [reference[f'arg{a}'] for a in written]
        against = 'tensorflow'
    else:
        import jax

        cpu, cpu_device = compile_program(text, 'cpu')
        results = cpu.execute([jax.device_put(v, cpu_device) for v in host])
        ref_metrics = results[: len(names)]
        ref_vars = results[len(names) :]
        against = 'xla-cpu'
    metric_err = _rel([metrics[k] for k in names], [np.asarray(m) for m in ref_metrics])
    var_err = _rel(
        np.concatenate([np.ravel(np.asarray(arrays[a], np.float64)) for a in written]),
        np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in ref_vars]),
    )
    return {'check_against': against, 'metric_rel_err': metric_err, 'variable_rel_err': var_err}


# Instructions that name or regroup values without launching work of their own.
NO_WORK = {'parameter', 'get-tuple-element', 'tuple', 'constant', 'bitcast', 'after-all'}


def loop_work(executable):
    """Per while loop of the compiled (optimised) program: its trip count where XLA knows
    it, and the instructions of its body that do work (fusions, dots, convolutions,
    copies, custom calls, nested loops) by opcode: on a GPU each is about one kernel
    launch, which is what makes a scan of small steps latency-bound."""
    computations, loops = {}, []
    for module in executable.hlo_modules():
        name = None
        for line in module.to_string().splitlines():
            head = re.match(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$', line)
            if head:
                name = head.group(1)
                computations[name] = []
            elif name and ' = ' in line:
                opcode = _opcode(line.split(' = ', 1)[1])
                computations[name].append(opcode)
                if opcode == 'while':
                    body = re.search(r'body=%?([\w.\-]+)', line).group(1)
                    trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
                    loops.append((body, int(trips.group(1)) if trips else None))
    rows = []
    for body, trips in loops:
        ops = [op for op in computations.get(body, []) if op not in NO_WORK]
        counts = {op: ops.count(op) for op in sorted(set(ops), key=lambda o: -ops.count(o))}
        rows.append({'body': body, 'trips': trips, 'work_ops': len(ops), 'by_opcode': counts})
    return rows


def _opcode(rest):
    """The opcode of an HLO instruction's right-hand side `TYPE opcode(operands), ...`."""
    if rest.startswith('('):  # a tuple type: skip its balanced parentheses
        depth = 0
        for i, char in enumerate(rest):
            depth += {'(': 1, ')': -1}.get(char, 0)
            if depth == 0:
                rest = rest[i + 1 :]
                break
    else:
        rest = rest.split(' ', 1)[1]
    return rest.strip().split('(', 1)[0]


def compile_program(text, platform=None):
    from jax._src.lib import xla_client
    from jax.extend.backend import get_backend

    backend = get_backend(platform)
    device = backend.local_devices()[0]
    options = xla_client.CompileOptions()
    return backend.compile_and_load(text, xla_client.DeviceList((device,)), options), device


def _rel(out, ref):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if not np.all(np.isfinite(out)):
        return float('inf')
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def table(rows):
    header = (
        f'{"configs":28} {"obs":16} {"batch":7} {"prec":5} {"ms/update":>10} '
        f'{"TFLOP/s":>8} {"compile s":>9} {"finite":>6} {"check":>18}'
    )
    lines = [header]
    for r in rows:
        check = (
            f'{r["metric_rel_err"]:.1e}/{r["variable_rel_err"]:.1e}'
            if 'metric_rel_err' in r
            else '-'
        )
        lines.append(
            f'{r["configs"]:28} {r["obs"]:16} {r["batch"]:7} {r["precision"]:5} '
            f'{r["update_ms"]:10.2f} {r["tflops"]:8.2f} {r["compile_s"]:9.1f} '
            f'{r["finite_metrics"] and r["finite_after"]!s:>6} {check:>18}'
        )
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
