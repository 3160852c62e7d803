"""What a wheel installs: every package of the repository, under names that cannot collide."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _setuptools():
    return tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools']


def test_the_wheel_lists_every_package_of_the_repository():
    listed = set(_setuptools()['packages'])
    found = {'.'.join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / 'dreamer_tf').rglob('__init__.py')}
    assert found <= listed, f'add {sorted(found - listed)} to pyproject.toml packages'
    assert {'dreamer_tf_export', 'dreamer_tf_runtime'} <= listed


def test_the_exporter_and_runtime_install_under_project_names():
    folders = _setuptools()['package-dir']
    assert folders == {'dreamer_tf_export': 'export',
                       'dreamer_tf_runtime': 'export/runtime/dreamer_tf_runtime'}
    for name, folder in folders.items():
        assert (ROOT / folder / '__init__.py').is_file(), name
    # A top-level `export` would collide with other distributions and with scripts/export.py.
    assert not any(p == 'export' or p.startswith('export.') for p in _setuptools()['packages'])


def test_the_runtime_distribution_ships_the_same_package():
    runtime = tomllib.loads((ROOT / 'export/runtime/pyproject.toml').read_text())
    assert runtime['tool']['setuptools']['packages'] == ['dreamer_tf_runtime']
    assert runtime['project']['dependencies'] == ['numpy>=1.21', 'onnxruntime>=1.16']
    assert runtime['project']['requires-python'] == '>=3.9'
