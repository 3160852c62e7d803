"""Run an exported ONNX policy in its env without TensorFlow:
`python scripts/serve.py --help`, the same as `dreamer-tf serve`
(dreamer_tf/cli/serve.py)."""

from dreamer_tf.cli.serve import main

if __name__ == '__main__':
    main()
