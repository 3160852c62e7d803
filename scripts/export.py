"""Export a trained run's policy to SavedModel, ONNX and TFLite:
`python scripts/export.py --help`, the same as `dreamer-tf export`
(dreamer_tf/cli/export.py)."""

from dreamer_tf.cli.export import main

if __name__ == '__main__':
    main()
