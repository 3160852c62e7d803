"""`dreamer-tf diagnose`: traces, action probes and planning over a trained run."""

import json

import numpy as np
import pytest

from dreamer_tf.cli import diagnose as diagnose_cli
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.value_trace import format_report as format_trace_report
from dreamer_tf.diagnostics.value_trace import return_to_go
from dreamer_tf.run.loop import train

# Training runs and commands, end to end (`-m "not slow and not integration"`: unit tests).
pytestmark = pytest.mark.integration

diagnose_main = diagnose_cli.main


@pytest.mark.parametrize('flags, message', [
    (['trace', '--out', 'episode.csv'], "--out writes .npz; got 'episode.csv'"),
    (['trace', '--out', 'e.npz', '--horizon', '0'], '--horizon and --samples must be >= 1'),
    (['probe', '--steps', 'a,b'], '--steps takes policy steps like 5,20,60'),
    (['probe', '--steps', '-1'], '--steps must be >= 0'),
    (['plan', '--top', '200'], '--top (200) cannot exceed --candidates'),
    (['plan', '--horizon', '0'], '--horizon must be >= 1'),
    (['plan', '--episodes', '0'], '--episodes and --envs must be >= 1'),
])
def test_diagnose_rejects_bad_flags_before_loading(tmp_path, capsys, flags, message):
    tool, *rest = flags
    with pytest.raises(SystemExit):
        diagnose_cli.parse([tool, '--logdir', str(tmp_path), *rest])
    assert message in capsys.readouterr().err


def test_diagnose_probes_constant_actions_and_plans_over_the_model(
        tmp_path, capsys, monkeypatch):
    from dreamer_tf.diagnostics.action_probe import LEVELS
    from dreamer_tf.envs.dmc import DMC

    config = load_config(['dreamerv2', 'dmc_proprio', 'debug'], {
        'task': 'dmc_cartpole_balance', 'logdir': str(tmp_path), 'run.steps': 300,
        'run.prefill': 200, 'run.eval_every': 1000, 'run.log_every': 100,
    })
    train(config)
    diagnose_main(['probe', '--logdir', str(tmp_path), '--steps', '3,0,900', '--horizon', '4',
                   '--json', str(tmp_path / 'probe.json'), '--seed', '7'])
    assert 'after the episode' in capsys.readouterr().out
    result = json.loads((tmp_path / 'probe.json').read_text())
    rows = result['rows']
    assert [row['step'] for row in rows] == [0, 3] and result['missed'] == [900]
    assert result['levels'] == list(LEVELS)
    for row in rows:
        assert all(len(row[k]) == len(LEVELS)
                   for k in ('model_reward', 'model_value', 'true_reward'))
        assert np.isfinite(row['model_reward'] + row['model_value']).all()
        assert -1 <= row['mode'][0] <= 1 and len(row['raw_mean']) == 1
    # At step 0 the simulator is at its reset state: the lookahead must give what a
    # fresh env of the same seed gives for each held action (restores in between).
    for level, total in zip(LEVELS, rows[0]['true_reward']):
        env = DMC('cartpole', 'balance', seed=7, repeat=2)
        env.reset()
        expected = sum(env.step(np.array([level], np.float32))['reward'] for _ in range(4))
        assert total == pytest.approx(expected, rel=1e-6)
    # The episode is played to the task's end (1000 env steps, action repeat 2).
    assert 0 < result['return'] <= 500 * 2
    # Planning over the same model and critic instead of the actor.
    diagnose_main(['plan', '--logdir', str(tmp_path), '--episodes', '1', '--horizon', '3',
                   '--candidates', '8', '--top', '2', '--iterations', '2',
                   '--json', str(tmp_path / 'plan.json')])
    assert 'CEM over its world model and critic (horizon 3, 8 candidates, top 2, 2 iterations)' \
        in capsys.readouterr().out
    planned = json.loads((tmp_path / 'plan.json').read_text())
    assert planned['mode'] == 'planned' and planned['episodes'][0]['length'] == 1000
    # A simulator worker that dies (here: MuJoCo refuses the GL backend) is named.
    monkeypatch.setattr('dreamer_tf.diagnostics.action_probe.RENDER_GL', 'no-such-backend')
    with pytest.raises(SystemExit, match='simulator worker .* died'):
        diagnose_main(['probe', '--logdir', str(tmp_path), '--steps', '1'])


def test_diagnose_probe_refuses_a_run_that_is_not_dm_control(tmp_path):
    config = load_config(['dreamerv2', 'toy', 'debug'], {
        'logdir': str(tmp_path), 'run.steps': 60, 'run.prefill': 40, 'run.eval_every': 1000,
    })
    train(config)
    with pytest.raises(SystemExit, match='restores MuJoCo states'):
        diagnose_main(['probe', '--logdir', str(tmp_path), '--steps', '1'])


def test_trace_report_compares_heads_with_the_episode():
    steps = {'reward': np.array([0.0, 1.0, 2.0, 3.0], np.float32)}
    model = {
        'model_reward': np.array([5.0, 1.0, 2.0, 4.0], np.float32),
        'return_to_go': return_to_go(steps['reward'], 0.5),
        'model_value': np.array([2.0, 3.0, 3.0, 1.0], np.float32),
        'bootstrapped_return': return_to_go(steps['reward'], 0.5, bootstrap=1.0),
        'imagined_return': np.array([2.0, 4.0, 3.0, 0.0], np.float32),
    }
    report = format_trace_report(steps, model, 0.5)
    # The reset step's prediction is left out of the error: RMSE of (0, 0, 1).
    assert f'RMSE {np.sqrt(1 / 3):.3f}' in report
    assert 'mean value 2.25 against a mean discounted return-to-go of 2.31' in report
    # Bootstrapped from 1.0: (2.875, 3.75, 3.5, 1.0).
    assert 'bootstrapped with its last value, mean 2.78; correlation' in report
    assert "targets' fixed point, the imagined return under the actor, mean 2.25" in report
    assert len(report.splitlines()) == 5 + 1 + 4  # summary lines, a header, every step
    # PlaNet has no critic: only the reward head is compared.
    del model['model_value']
    report = format_trace_report(steps, model, 0.5)
    assert 'critic' not in report and 'value' not in report.splitlines()[2]
