"""Run an exported ONNX policy in its env without TensorFlow: `python scripts/serve.py --help`, the same as `dreamer-tf serve`
(dreamer_tf/cli/serve.py)."""

import os
import sys

# This folder holds export.py, named like the `export` package: take it off the import
# path so that `import export` finds the package rather than that script.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != HERE]

from dreamer_tf.cli.serve import main  # noqa: E402

if __name__ == '__main__':
    main()
