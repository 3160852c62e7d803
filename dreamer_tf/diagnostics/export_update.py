"""Export the compiled update of a preset as a StableHLO program, for timing on a GPU without TF.

The XLA program of `Agent._train_step` (`jit_compile=True`) takes the batch,
the update seed and every variable it reads as arguments, and returns the
metrics followed by the new value of every variable it writes. This script
writes that program and what is needed to run it to a folder:

  update.mlir.gz  the StableHLO text (`experimental_get_compiler_ir(..., stage='stablehlo')`,
                  with the two MHLO ops it keeps rewritten: `portable`)
  inputs.npz      the batch and seed (`arg0`, ...), and the variable values when --values full
                  (with --values stats, batch entries over 1 MB are left for the runner to draw:
                  uniform bytes for images, standard normal otherwise)
  manifest.json   each argument's name, shape and dtype (with the mean and std of its
                  initial value, from which --values stats has the runner draw it), each
                  result's name, which argument each written variable feeds back into,
                  and the update's matmul GFLOP
  reference.npz   with --values full: TF's own results of one update on these inputs

`scripts/run_exported_update.py` (numpy and jaxlib only) compiles and runs it.

  python scripts/export_update.py --configs dreamerv3 xs --obs vector:5 --act 1 --out /tmp/v3xs
  python scripts/export_update.py --configs dreamerv3 s dmc_vision --obs image:64x64x3 --act 6 \\
      --precision bf16 --values stats --out hlo/v3s_image_bf16
"""

import argparse
import gzip
import os
import re
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='+', required=True)
    parser.add_argument('--obs', default='vector:5', help="'vector:D', 'image:HxWxC' or both")
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument('--discrete', type=int, help='number of discrete actions')
    actions.add_argument('--act', type=int, default=1, help='continuous action dimension')
    parser.add_argument('--precision', default='32', choices=['32', '16', 'bf16'])
    parser.add_argument('--batch', type=int, help='override run.batch_size')
    parser.add_argument('--length', type=int, help='override run.batch_length')
    parser.add_argument(
        '--values',
        default='full',
        choices=['full', 'stats'],
        help='full: store every variable and a TF reference result; stats: only each '
        "variable's mean and std (large models, where the values would not travel)",
    )
    parser.add_argument('--out', required=True, help='folder to write (created; must be empty)')
    args = parser.parse_args()
    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f'error: --out {args.out} is not empty; name a new folder')
    export(args)


def export(args):
    import tensorflow as tf

    from dreamer_tf.diagnostics import benchmark

    config, agent, batch = _build(args)
    seed = agent.rng.make_seeds(1)[:, 0]
    text = agent.update.experimental_get_compiler_ir(batch, seed)(stage='stablehlo')
    explicit = tf.nest.flatten((batch, seed))
    inputs, names, captured = _arguments(agent, batch, seed, text)
    result_types = _signature(text)[1]
    metrics = agent.update(batch, seed) if args.values == 'full' else None
    metric_names = sorted(_metric_keys(agent, batch, seed))
    updates = _feedback(text, len(metric_names))
    if len(updates) != len(result_types) - len(metric_names):
        raise RuntimeError('some results are neither metrics nor written variables')
    flops = benchmark.graph_flops(agent.update, batch, seed)
    _write_values(args, inputs, len(explicit), captured, metrics, metric_names, updates, text)
    _write_manifest(args, config, inputs, names, len(explicit), metric_names, updates, flops,
                    benchmark.param_counts(agent))
    print(
        f'wrote {args.out}: {len(inputs)} arguments ({len(captured)} variables), '
        f'{len(result_types)} results ({len(metric_names)} metrics, {len(updates)} written '
        f'variables), {len(text) / 1e6:.1f} MB of StableHLO, {flops / 1e9:.1f} GFLOP per update'
    )


def _build(args):
    """The config, the agent and a synthetic batch of the exported update."""
    from dreamer_tf.config import load_config
    from dreamer_tf.diagnostics import benchmark
    from dreamer_tf.envs.base import ActSpace

    overrides = {'jit': 'on', 'precision': args.precision}
    if args.batch:
        overrides['run.batch_size'] = args.batch
    if args.length:
        overrides['run.batch_length'] = args.length
    config = load_config(args.configs, overrides)
    obs_space = benchmark.parse_obs(args.obs)
    act_space = ActSpace(bool(args.discrete), args.discrete or args.act)
    agent, batch = benchmark.build(config, obs_space, act_space)
    return config, agent, batch


def _arguments(agent, batch, seed, text):
    """The program's arguments in its order: the batch and seed, then the variables it
    captures; their values, names and the captured variables. Checked against `text`."""
    import tensorflow as tf

    concrete = agent.update.get_concrete_function(batch, seed)
    explicit = tf.nest.flatten((batch, seed))
    by_handle = {id(v.handle): v for v in agent.variables}
    captured = [by_handle[id(h)] for h in concrete.captured_inputs]
    inputs = [t.numpy() for t in explicit] + [v.numpy() for v in captured]
    names = sorted(batch) + ['seed'] + [v.path if hasattr(v, 'path') else v.name
                                        for v in captured]
    arg_types = _signature(text)[0]
    if len(arg_types) != len(inputs):
        raise RuntimeError(
            f'the program takes {len(arg_types)} arguments, but the batch, seed and captured '
            f'variables are {len(inputs)}'
        )
    for i, (value, type_) in enumerate(zip(inputs, arg_types)):
        if tuple(value.shape) != type_[0]:
            raise RuntimeError(f'argument {i} ({names[i]}): shape {value.shape} != {type_[0]}')
    return inputs, names, captured


def _write_values(args, inputs, explicit, captured, metrics, metric_names, updates, text):
    """update.mlir.gz, inputs.npz and (with --values full) reference.npz in args.out."""
    from dreamer_tf.fileio import write_atomic

    os.makedirs(args.out, exist_ok=True)
    write_atomic(os.path.join(args.out, 'update.mlir.gz'), gzip.compress(portable(text).encode()))
    full = args.values == 'full'
    stored = {f'arg{i}': inputs[i] for i in range(explicit)
              if full or inputs[i].nbytes <= 2**20}
    if full:
        stored.update({f'arg{i}': inputs[i] for i in range(explicit, len(inputs))})
    _save_npz(os.path.join(args.out, 'inputs.npz'), stored, write_atomic)
    if full:
        reference = {f'metric_{k}': metrics[k].numpy() for k in metric_names}
        reference.update({f'arg{a}': captured[a - explicit].numpy() for a in updates})
        _save_npz(os.path.join(args.out, 'reference.npz'), reference, write_atomic)


def _write_manifest(args, config, inputs, names, explicit, metric_names, updates, flops,
                    params):
    import numpy as np
    import tensorflow as tf

    from dreamer_tf.fileio import write_json

    args_meta = []
    for i, value in enumerate(inputs):
        entry = {'name': names[i], 'shape': list(value.shape), 'dtype': str(value.dtype)}
        if i >= explicit:
            as64 = value.astype(np.float64)
            entry.update(mean=float(as64.mean()), std=float(as64.std()))
        args_meta.append(entry)
    write_json(
        os.path.join(args.out, 'manifest.json'),
        {
            'configs': args.configs,
            'obs': args.obs,
            'act': args.discrete or args.act,
            'discrete': bool(args.discrete),
            'precision': args.precision,
            'batch': [config.run.batch_size, config.run.batch_length],
            'values': args.values,
            'gflop': flops / 1e9,
            'params': params,  # trainable, by part (benchmark.param_counts)
            'args': args_meta,
            'metrics': metric_names,
            # Result len(metrics) + j is the new value of argument updates[j].
            'updates': updates,
            'tensorflow': tf.__version__,
        },
    )


def _metric_keys(agent, batch, seed):
    """The metric names in the order of the program's first results (tf.nest sorts dict keys)."""
    return agent.update.get_concrete_function(batch, seed).structured_outputs.keys()


_TENSOR = re.compile(r'tensor<([0-9x]*)([a-z][a-z0-9]*)>')


def _parse(types):
    out = []
    for dims, dtype in _TENSOR.findall(types):
        shape = tuple(int(d) for d in dims.split('x') if d)
        out.append((shape, dtype))
    return out


def _signature(text):
    """(argument types, result types) of the program's main function, as (shape, dtype)."""
    start = text.index('func.func @main(')
    body = text.index(') -> (', start)
    end = text.index(') {', body)
    params = re.sub(r'loc\([^)]*\)', '', text[start:body])
    return _parse(params), _parse(text[body + 5 : end])


def _feedback(text, n_metrics):
    """For each written-variable result, the argument it updates, from the module's
    `mhlo.input_output_alias` (TF's XLA compiler lets each new value alias its variable)."""
    pairs = re.findall(r'parameter_number = (\d+) : i64\}, output_index = array<i64: (\d+)>', text)
    alias = {int(out): int(arg) for arg, out in pairs}
    written = sorted(alias)
    if written != list(range(n_metrics, n_metrics + len(written))):
        raise RuntimeError(f'written variables are not the results after the {n_metrics} metrics')
    return [alias[out] for out in written]


_UNPORTABLE = re.compile(r'(%\S+) = mhlo\.(copy|erf) (%\S+) : (tensor<[^>]*>)')


def portable(text):
    """StableHLO (+ CHLO) only: TF's export keeps two MHLO ops that newer jaxlib
    parsers reject; a copy becomes a same-type convert and erf CHLO's erf."""
    ops = {'copy': 'stablehlo.convert', 'erf': 'chlo.erf'}
    return _UNPORTABLE.sub(lambda m: f'{m[1]} = "{ops[m[2]]}"({m[3]}) : ({m[4]}) -> {m[4]}', text)


def _save_npz(path, arrays, write_atomic):
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


if __name__ == '__main__':
    main()
