"""Export the compiled update of a preset as a StableHLO program, for timing on a GPU
without TF: `python scripts/export_update.py --help` (dreamer_tf/diagnostics/export_update.py)."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.diagnostics.export_update import main  # noqa: E402

if __name__ == '__main__':
    main()
