"""The `dreamer-tf` command (dreamer_tf/cli): dispatch, help and exit statuses."""

import importlib

import pytest

from dreamer_tf import cli

# Training runs and commands, end to end (`-m "not slow and not integration"`: unit tests).
pytestmark = pytest.mark.integration


def test_usage_lists_every_command_and_exits_zero(capsys):
    assert cli.main([]) == 0
    printed = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert f'  {name} ' in printed
        assert callable(importlib.import_module(f'dreamer_tf.cli.{name}').main)


def test_an_unknown_command_is_named():
    with pytest.raises(SystemExit, match="unknown command 'trian'"):
        cli.main(['trian'])


@pytest.mark.parametrize('name', list(cli.COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, '--help'])
    assert exit_.value.code == 0
    assert f'usage: dreamer-tf {name}' in capsys.readouterr().out


def test_a_value_returned_by_a_command_is_not_an_exit_status(monkeypatch):
    # `sys.exit(main())` would print a returned list and exit 1: serve returns its returns.
    from dreamer_tf.cli import serve

    monkeypatch.setattr(serve, 'main', lambda argv: [11.0])
    assert cli.main(['serve', 'policy.onnx']) == 0
