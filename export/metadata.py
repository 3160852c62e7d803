"""The metadata JSON beside every exported model (dreamer_tf_runtime.metadata, which the
TensorFlow-free runtime reads), and the exporter's atomic folder writes."""

import os
import shutil
import tempfile
from pathlib import Path

from dreamer_tf_runtime.metadata import (  # noqa: F401 - the exporter's metadata API
    CONTROL_INPUTS,
    FORMAT_VERSION,
    FORMATS,
    MODES,
    NOISE_INPUTS,
    REQUIRED,
    RESERVED,
    STATE_KEYS,
    STEP_OUTPUTS,
    MetadataError,
    check,
    initial_state,
    metadata_path,
    read,
)


def temp_dir_beside(path):
    """A fresh folder next to `path` (same file system, so `replace_dir` can rename it)."""
    path = Path(path)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp'))


def replace_dir(temp, path):
    """Moves the finished folder `temp` to `path`, replacing an older export there.

    A folder cannot be swapped by one rename over a non-empty target: the old one
    is renamed aside first, so `path` is either the old or the new export, never a mix.
    """
    temp, path = Path(temp), Path(path)
    os.chmod(temp, 0o755)  # mkdtemp makes the folder private
    old = None
    if path.exists():
        old = temp_dir_beside(path)
        os.replace(path, old / 'old')
    os.replace(temp, path)
    if old is not None:
        shutil.rmtree(old)
