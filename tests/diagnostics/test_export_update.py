"""scripts/export_update.py: the update's XLA program, its arguments and which result feeds
which."""

import gzip
import json
import pathlib
import subprocess
import sys

import numpy as np

from dreamer_tf.diagnostics import export_update

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_portable_rewrites_the_two_mhlo_ops():
    text = (
        '    %5 = mhlo.copy %4 : tensor<3x2xf32> loc(#loc15)\n'
        '    %7 = mhlo.erf %6 : tensor<4xf32> loc(#loc9)\n'
        '    %8 = stablehlo.add %5, %5 : tensor<3x2xf32>\n'
    )
    assert export_update.portable(text) == (
        '    %5 = "stablehlo.convert"(%4) : (tensor<3x2xf32>) -> tensor<3x2xf32> loc(#loc15)\n'
        '    %7 = "chlo.erf"(%6) : (tensor<4xf32>) -> tensor<4xf32> loc(#loc9)\n'
        '    %8 = stablehlo.add %5, %5 : tensor<3x2xf32>\n'
    )


def test_feedback_reads_the_alias_table():
    text = (
        'module @m attributes {mhlo.input_output_alias = ['
        '{alias = {kind = "may_alias", parameter_index = array<i64>, parameter_number = 9 : i64}, '
        'output_index = array<i64: 3>}, '
        '{alias = {kind = "may_alias", parameter_index = array<i64>, parameter_number = 7 : i64}, '
        'output_index = array<i64: 2>}]} {'
    )
    assert export_update._feedback(text, 2) == [7, 9]


def test_export_writes_program_inputs_and_tf_reference(tmp_path):
    out = tmp_path / 'v3'
    subprocess.run(
        [
            sys.executable,
            str(ROOT / 'scripts/export_update.py'),
            '--configs',
            'dreamerv3',
            'debug',
            '--obs',
            'vector:3',
            '--act',
            '2',
            '--out',
            str(out),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    manifest = json.loads((out / 'manifest.json').read_text())
    with gzip.open(out / 'update.mlir.gz', 'rt') as f:
        text = f.read()
    assert 'mhlo.copy' not in text and 'func.func @main(' in text
    inputs, reference = np.load(out / 'inputs.npz'), np.load(out / 'reference.npz')
    args = manifest['args']
    # Batch (sorted keys), seed, then every variable the update reads, each stored.
    assert [a['name'] for a in args[:7]] == [
        'action',
        'is_first',
        'is_last',
        'is_terminal',
        'reward',
        'vector',
        'seed',
    ]
    assert len(inputs.files) == len(args)
    for i, a in enumerate(args):
        assert list(inputs[f'arg{i}'].shape) == a['shape']
    # Each written variable feeds back into an argument of its own shape, and the
    # update changed it (Adam moves every weight on its first step).
    assert manifest['updates'] and len(set(manifest['updates'])) == len(manifest['updates'])
    moved = 0
    for a in manifest['updates']:
        assert reference[f'arg{a}'].shape == inputs[f'arg{a}'].shape
        moved += not np.array_equal(reference[f'arg{a}'], inputs[f'arg{a}'])
    assert moved > len(manifest['updates']) // 2
    assert np.isfinite(reference['metric_model_loss']) and manifest['gflop'] > 0
    rerun = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'scripts/export_update.py'),
            '--configs',
            'dreamerv3',
            'debug',
            '--out',
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode != 0 and 'not empty' in rerun.stderr
