"""Import a file under scripts/ as a module, for tests of its functions.

scripts/ is not a package (each file runs as `python scripts/x.py`), so tests load it by path.
"""

import importlib.util
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / 'scripts'


def load_script(name):
    """The module scripts/<name>.py, executed once per call under the name `script_<name>`."""
    spec = importlib.util.spec_from_file_location(f'script_{name}', SCRIPTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
