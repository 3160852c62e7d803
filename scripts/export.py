"""Export a trained run's policy to SavedModel, ONNX and TFLite: `python scripts/export.py --help`, the same as `dreamer-tf export`
(dreamer_tf/cli/export.py)."""

import os
import sys

# This folder holds export.py, named like the `export` package: take it off the import
# path so that `import export` finds the package rather than that script.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != HERE]

from dreamer_tf.cli.export import main  # noqa: E402

if __name__ == '__main__':
    main()
