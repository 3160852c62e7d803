"""Export a trained Dreamer policy as one recurrent step, and run it without TensorFlow.

Modules that need TensorFlow: `policy` (the exportable step), `checkpoint`
(restore a run), `writers` (SavedModel, ONNX, TFLite), `parity` (compare a
written model with the TensorFlow policy), `benchmark`.
Modules that do not: `metadata` and `runtime` (numpy + onnxruntime only).
This file imports nothing, so that `import export.runtime` stays TensorFlow-free.
"""
