"""The side-by-side with the authors' and sheeprl's DreamerV3 (diagnostics/peers)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from dreamer_tf import results
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics import benchmark
from dreamer_tf.envs.base import ActSpace

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ROOT / 'dreamer_tf' / 'diagnostics' / 'peers' / 'compare.py'
# The peers' virtual environments (`compare.py setup --venvs DIR`), where they exist.
PEERS = os.environ.get('DREAMER_TF_PEERS')


def compare(*args, cwd):
    done = subprocess.run([sys.executable, str(COMPARE), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_our_worker_is_timed_and_a_missing_peer_is_named_with_its_fix(tmp_path):
    out = compare('run', '--systems', 'ours', 'authors', '--size', 'xs', '--obs', 'vector:5',
                  '--batch', '2', '--length', '8', '--rounds', '2', '--updates', '2',
                  '--venvs', str(tmp_path / 'none'), '--json', 'rows.json',
                  '--record', 'peers.yaml', '--machine', 'a test', cwd=tmp_path)
    assert 'run `compare.py setup`' in out
    ours, authors = json.loads((tmp_path / 'rows.json').read_text())
    assert len(ours['times_s']) == 4 and all(t > 0 for t in ours['times_s'])
    assert ours['ours_speedup'] == 1.0 and 'not found' in authors['error']
    config = load_config(['dreamerv3', 'xs', 'dmc_proprio'])
    agent, _ = benchmark.build(config, benchmark.parse_obs('vector:5'), ActSpace(False, 6))
    assert ours['info']['params'] == benchmark.param_counts(agent)
    record = results.check_speed(YAML(typ='safe').load(tmp_path / 'peers.yaml'), 'peers.yaml')
    assert record['title'] == ("DreamerV3 update on CPU, side by side: ours (TensorFlow), "
                               "the authors' dreamerv3 1.5.0")
    assert record['rows'] == [['xs', 'vector:5', '32', 'ours', ours['params'],
                               round(ours['median_s'], 4), round(ours['min_s'], 4), 1.0]]


@pytest.mark.skipif(not PEERS, reason='DREAMER_TF_PEERS names no peer environments')
@pytest.mark.parametrize('obs', ['vector:17', 'image:64x64x3'])
def test_the_peers_run_at_our_parameter_count(tmp_path, obs):
    compare('run', '--systems', 'ours', 'authors', 'sheeprl', '--size', 's', '--obs', obs,
            '--batch', '2', '--length', '8', '--rounds', '1', '--updates', '1',
            '--venvs', PEERS, '--json', 'rows.json', cwd=tmp_path)
    rows = {r['system']: r for r in json.loads((tmp_path / 'rows.json').read_text())}
    for system in ('authors', 'sheeprl'):
        assert 'error' not in rows[system], rows[system]['error']
        assert abs(rows[system]['params'] / rows['ours']['params'] - 1) < 0.02, rows[system]


@pytest.mark.skipif(not PEERS, reason='DREAMER_TF_PEERS names no peer environments')
def test_our_exported_update_runs_beside_the_authors_on_xla(tmp_path):
    shape = ['--size', 'xs', '--obs', 'vector:5', '--batch', '2', '--length', '8']
    compare('export', '--hlo', 'hlo', *shape, cwd=tmp_path)
    compare('run', '--systems', 'ours_hlo', 'authors', '--hlo', 'hlo', '--platform', 'cpu',
            *shape, '--rounds', '1', '--updates', '1', '--venvs', PEERS,
            '--json', 'rows.json', cwd=tmp_path)
    rows = {r['system']: r for r in json.loads((tmp_path / 'rows.json').read_text())}
    assert 'error' not in rows['ours_hlo'] and 'error' not in rows['authors'], rows
    assert rows['ours_hlo']['params'] == rows['authors']['params']
    assert rows['ours_hlo']['ours_speedup'] == 1.0 and rows['authors']['median_s'] > 0


KERNELS = ROOT / 'dreamer_tf' / 'diagnostics' / 'peers' / 'kernels.py'


def test_tensorflows_element_wise_kernels_are_timed_in_both_dtypes():
    done = subprocess.run([sys.executable, str(KERNELS), '--framework', 'tensorflow',
                           '--repeats', '2'], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(r['op'], r['dtype']) for r in rows} == {
        (op, dtype) for op in ('mul', 'add', 'sigmoid', 'tanh', 'silu', 'cast')
        for dtype in ('float32', 'bfloat16')}
    assert all(r['ms'] > 0 and r['gb_per_s'] > 0 for r in rows)


@pytest.mark.skipif(not PEERS, reason='DREAMER_TF_PEERS names no peer environments')
def test_kernels_side_by_side_with_pytorch_write_a_record(tmp_path):
    out = compare('kernels', '--venvs', PEERS, '--rounds', '1', '--record', 'kernels.yaml',
                  '--machine', 'a test', cwd=tmp_path)
    assert 'TF / torch' in out
    record = results.check_speed(YAML(typ='safe').load(tmp_path / 'kernels.yaml'), 'k.yaml')
    assert len(record['rows']) == 12 and all(row[2] > 0 and row[3] > 0 for row in record['rows'])
