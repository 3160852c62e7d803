"""This project's update as exported StableHLO (`scripts/export_update.py`), run by
jaxlib as a side-by-side worker (`protocol.py`): for GPU machines with JAX and no
TensorFlow, beside the authors' JAX code on the same card.

`--hlo DIR` holds one exported folder per combination, named by `protocol.combination`
(`compare.py export` writes them). Runs in any environment with numpy and jax, e.g. the
authors' (`compare.py setup`).

  python dreamer_tf/diagnostics/peers/ours_hlo.py --hlo hlo --size s --obs vector:17
"""

import os
import sys

import protocol

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'scripts')


def build(args):
    import jax

    sys.path.insert(0, SCRIPTS)
    from run_exported_update import Program

    folder = os.path.join(args.hlo, protocol.combination(args))
    program = Program(folder, 'gpu' if args.platform == 'gpu' else 'cpu')
    manifest = program.manifest
    wanted = {'obs': args.obs, 'act': args.act, 'precision': args.precision,
              'batch': [args.batch, args.length]}
    found = {key: manifest[key] for key in wanted}
    if found != wanted:
        raise SystemExit(f'{folder} was exported for {found}, not {wanted}: export again')

    def update():
        jax.block_until_ready((program.step(), program.arrays))

    info = {'system': 'dreamer_tf exported (StableHLO on jaxlib)', 'params': manifest['params'],
            'config': {'configs': manifest['configs'], 'precision': manifest['precision'],
                       'tensorflow': manifest['tensorflow'], 'jax': jax.__version__,
                       'compile_s': program.compile_s},
            'notes': ['the XLA program of the same update, compiled by jaxlib instead of TF']}
    return update, info


def main():
    parser = protocol.parser(__doc__.splitlines()[0])
    parser.add_argument('--hlo', required=True, help='the folder of exported updates')
    args = parser.parse_args()
    protocol.serve(lambda: build(args), warmup=args.warmup)


if __name__ == '__main__':
    main()
