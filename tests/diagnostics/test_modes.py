"""dreamer_tf/diagnostics/modes.py: the loop's modes timed side by side, with profiles."""

import pytest

from dreamer_tf.diagnostics import modes


@pytest.mark.integration
def test_modes_time_both_loops_at_one_train_ratio(capsys):
    rows = modes.main(['--configs', 'dreamerv3', 'gym', 'debug', '--task', 'gym_CartPole-v1',
                       '--steps', '240', '--prefill', '64', '--ratios', '8',
                       '--modes', 'sync', 'async'])
    assert [row['mode'] for row in rows] == ['sync', 'async']
    assert all(row['env_steps_per_s'] > 0 and row['updates_per_s'] > 0 for row in rows)
    # The profile: sync updates in its main thread, async in the learner's.
    assert all(0 < row['profile']['collect'] < 1 and row['profile']['update'] > 0 for row in rows)
    assert '| async | 8 |' in capsys.readouterr().out
    assert modes.mode_args('actors', 2) == ['--run.mode', 'async', '--distribute.actors', '2']
