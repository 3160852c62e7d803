"""scripts/learning_check.py: short learning checks on the toy task."""

import json

import pytest
from script_module import load_script

learning_check = load_script('learning_check')


def test_report_names_each_preset_its_evaluations_and_verdict():
    args, _ = learning_check.parse(['--presets', 'dreamerv1', 'planet'])
    rows = [
        {'preset': 'dreamerv1', 'exit_code': 0, 'wall_s': 150.0, 'updates': 900,
         'evals': [(400, 9.5), (1400, 17.8), (2400, 16.1)], 'best': 17.8, 'last': 16.1,
         'passed': True},
        {'preset': 'planet', 'exit_code': 1, 'wall_s': 3.0, 'updates': 0,
         'evals': [], 'best': None, 'last': None, 'passed': False},
    ]
    rows[0]['probe'] = {'readout_error': [0.06, 0.05],
                        'imagined_goal_error': [0.1 * i for i in range(16)],
                        'return_corr': 0.14, 'critic_corr': -0.27, 'actor_agrees': 0.55,
                        'actor_saturation': 0.93}
    text = learning_check.report(rows, args)
    assert 'optimal 19.4' in text and 'saturated 1.4' in text
    assert 'pass: best evaluation >= 15.0' in text
    assert ('| dreamerv1 | 900 | 150 s | 400: 9.5, 1,400: 17.8, 2,400: 16.1 '
            '| 17.8 | 16.1 | yes |') in text
    assert '| planet | 0 | 3 s | none | none | none | no (exit 1) |' in text
    assert ('| dreamerv1 | 0.06, 0.05 | 0: 0.00, 5: 0.50, 10: 1.00, 15: 1.50 '
            '| 0.14 / -0.27 | 55% | 0.93 |') in text


@pytest.mark.parametrize('argv,message', [
    (['--presets', 'dreamerv4'], 'unknown presets'),
    (['--run.steps'], 'config overrides'),
    (['run.steps', '10'], 'config overrides'),
])
def test_bad_arguments_are_rejected(argv, message, capsys):
    with pytest.raises(SystemExit):
        learning_check.parse(argv)
    assert message in capsys.readouterr().err


def test_a_check_runs_reports_and_resumes(tmp_path, capsys):
    """The script trains through train.py (tiny networks here), reads the run's
    metrics back and fails when the last evaluation is below the bar."""
    argv = ['--presets', 'dreamerv1', '--blocks', 'toy', 'debug', '--outdir', str(tmp_path),
            '--json', str(tmp_path / 'check.json'), '--run.steps', '100',
            '--run.prefill', '40', '--run.eval_every', '60', '--run.train_every', '20']
    assert learning_check.main(argv + ['--min-return', '-100']) == 0
    result = json.loads((tmp_path / 'check.json').read_text())
    (row,) = result['rows']
    assert row['exit_code'] == 0 and row['updates'] > 0
    assert [step for step, _ in row['evals']] == [40, 100]
    # The probe read the checkpoint: read-out errors, the goal over 1 + horizon imagined
    # steps (3 at the debug size), correlations and fractions in range.
    probe = row['probe']
    assert len(probe['readout_error']) == 2 and len(probe['imagined_goal_error']) == 4
    assert all(-1 <= probe[k] <= 1 for k in ('return_corr', 'critic_corr'))
    assert 0 <= probe['actor_agrees'] <= 1 and 0 <= probe['actor_saturation'] <= 1
    assert 'What each agent learned' in capsys.readouterr().out
    assert row['best'] == max(value for _, value in row['evals'])
    assert row['last'] == row['evals'][-1][1]
    # Run again: the finished run is resumed, not retrained, and judged by the new bar.
    assert learning_check.main(argv + ['--min-return', '1000', '--judge', 'last']) == 1
    rerun = json.loads((tmp_path / 'check.json').read_text())
    assert rerun['judge'] == 'last' and not rerun['rows'][0]['passed']
    assert rerun['rows'][0]['evals'] == row['evals']
    assert rerun['rows'][0]['updates'] == row['updates']


@pytest.mark.slow
def test_dreamerv1_learns_the_toy_task(tmp_path):
    """DreamerV1 at the `quick` settings comes near the optimum (19.4) of toy_reach,
    far above doing nothing (10.0): 18.5 at 2,400 env steps when measured."""
    argv = ['--presets', 'dreamerv1', '--outdir', str(tmp_path),
            '--json', str(tmp_path / 'check.json')]
    assert learning_check.main(argv) == 0
    (row,) = json.loads((tmp_path / 'check.json').read_text())['rows']
    assert row['best'] >= 15.0
