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


HLO = """HloModule update, entry_computation_layout={(f32[4]{0})->f32[4]{0}}

%fused_computation (param_0: f32[4]) -> f32[4] {
  %param_0 = f32[4]{0} parameter(0)
  ROOT %exponential = f32[4]{0} exponential(%param_0)
}

%body (arg: (s32[], f32[4])) -> (s32[], f32[4]) {
  %arg = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%arg), index=0
  %x = f32[4]{0} get-tuple-element(%arg), index=1
  %fusion = f32[4]{0} fusion(%x), kind=kLoop, calls=%fused_computation
  %dot = f32[4]{0} dot(%fusion, %fusion), lhs_contracting_dims={}, rhs_contracting_dims={}
  %copy = f32[4]{0} copy(%dot)
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  ROOT %tuple = (s32[], f32[4]{0}) tuple(%next, %copy)
}

%cond (arg: (s32[], f32[4])) -> pred[] {
  %arg = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%arg), index=0
  %n = s32[] constant(64)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

ENTRY %main (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %zero = s32[] constant(0)
  %init = (s32[], f32[4]{0}) tuple(%zero, %p)
  %while = (s32[], f32[4]{0}) while(%init), condition=%cond, body=%body, backend_config=TRIPS
  ROOT %out = f32[4]{0} get-tuple-element(%while), index=1
}
""".replace('TRIPS', '{"known_trip_count":{"n":"64"}}')


def test_loop_work_counts_what_each_loop_body_launches():
    sys.path.insert(0, str(ROOT / 'scripts'))
    try:
        import run_exported_update
    finally:
        sys.path.remove(str(ROOT / 'scripts'))

    class Module:
        def to_string(self):
            return HLO

    class Executable:
        def hlo_modules(self):
            return [Module()]

    assert run_exported_update.loop_work(Executable()) == [
        {'body': 'body', 'trips': 64, 'work_ops': 4,
         'by_opcode': {'add': 1, 'copy': 1, 'dot': 1, 'fusion': 1}},
    ]
