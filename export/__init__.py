"""Export a trained Dreamer policy as one recurrent step.

Modules that need TensorFlow: `policy` (the exportable step), `checkpoint`
(restore a run), `writers` (SavedModel, ONNX, TFLite), `parity` (compare a
written model with the TensorFlow policy), `verify`, `benchmark`. `metadata`
does not. The runtime that runs an export without TensorFlow is its own
distribution in `runtime/` (the `dreamer_tf_runtime` package).
"""
