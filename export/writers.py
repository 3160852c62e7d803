"""Writers: SavedModel, ONNX (tf2onnx) and TFLite (float32, float16, dynamic-range int8).

Each writes the model through a temporary name and a rename, then its metadata
JSON beside it (`<model>.json`, see dreamer_tf_export.metadata), and returns the metadata.
`info` is the run's part of the metadata (dreamer_tf_export.checkpoint.Run.describe).
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from dreamer_tf.fileio import write_atomic, write_json
from dreamer_tf_export import metadata

# Opset 17 is the newest that both tf2onnx 1.17 (up to 18) and common edge
# builds of ONNX Runtime (1.14 and later) support; it is recorded in the metadata.
DEFAULT_OPSET = 17
TFLITE_VARIANTS = ('float32', 'float16', 'int8')
FILE_NAMES = {
    'savedmodel': 'policy_savedmodel',
    'onnx': 'policy.onnx',
    'tflite': 'policy.tflite',
    'tflite_float16': 'policy_float16.tflite',
    'tflite_int8': 'policy_int8.tflite',
}
ALL = tuple(FILE_NAMES)


def write_saved_model(policy, path, info):
    """A SavedModel with serving signatures `step` and `initial_state`."""
    path = Path(path)
    temp = metadata.temp_dir_beside(path)
    try:
        _save(policy, temp / 'model')
        metadata.replace_dir(temp / 'model', path)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return _finish(path, policy, info, {'format': 'savedmodel', 'variant': 'float32'})


def write_onnx(policy, path, info, opset=DEFAULT_OPSET):
    """An ONNX model of `step`; the initial state is in the metadata (`initial_state`)."""
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(
        policy.step,
        input_signature=policy.input_specs,
        opset=opset,
        custom_op_handlers={'Log1p': (_log1p_to_onnx, [])},
    )
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != (policy.input_names, list(metadata.STEP_OUTPUTS)):
        raise RuntimeError(f'tf2onnx renamed the step inputs/outputs: got {names}')
    write_atomic(path, model.SerializeToString())
    return _finish(path, policy, info, {'format': 'onnx', 'variant': 'float32', 'opset': opset})


def write_tflite(policy, path, info, variant='float32', saved_model=None):
    """A TFLite model whose signature `step` is the policy step.

    float16 stores weights as float16 (computed in float32 on CPUs); int8 is
    dynamic-range quantisation (int8 weights, activations quantised on the fly).
    The initial state is in the metadata (`initial_state`). The converter reads a
    SavedModel of `policy`: `saved_model` if given, else one saved for this call.
    """
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f'TFLite variant must be one of {TFLITE_VARIANTS}, got {variant!r}')
    if saved_model is None:
        with tempfile.TemporaryDirectory() as temp:
            _save(policy, Path(temp) / 'model')
            return write_tflite(policy, path, info, variant, Path(temp) / 'model')
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=['step'])
    if variant != 'float32':
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == 'float16':
        converter.target_spec.supported_types = [tf.float16]
    write_atomic(path, converter.convert())
    return _finish(path, policy, info, {'format': 'tflite', 'variant': variant})


def export(policy, out_dir, info, formats=ALL, opset=DEFAULT_OPSET):
    """Writes each of `formats` (keys of FILE_NAMES) into `out_dir`; returns {format: path}."""
    unknown = sorted(set(formats) - set(ALL))
    if unknown:
        raise ValueError(f'unknown formats {unknown}; choose from {list(ALL)}')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / FILE_NAMES[name] for name in formats}
    if 'savedmodel' in paths:
        write_saved_model(policy, paths['savedmodel'], info)
    if 'onnx' in paths:
        write_onnx(policy, paths['onnx'], info, opset)
    with tempfile.TemporaryDirectory() as temp:
        # Every TFLite variant converts from one SavedModel, saved once.
        saved_model = paths.get('savedmodel')
        for name in (n for n in formats if n.startswith('tflite')):
            if saved_model is None:
                saved_model = Path(temp) / 'model'
                _save(policy, saved_model)
            variant = name.partition('_')[2] or 'float32'
            write_tflite(policy, paths[name], info, variant, saved_model)
    return {name: paths[name] for name in formats}


def _save(policy, path):
    tf.saved_model.save(
        policy,
        str(path),
        signatures={
            'step': policy.step.get_concrete_function(),
            'initial_state': policy.initial_state.get_concrete_function(),
        },
    )


def _finish(path, policy, info, fields):
    meta = {
        'format_version': metadata.FORMAT_VERSION,
        **fields,
        **info,
        **policy.describe(),
        'file': Path(path).name,
    }
    metadata.check(meta, f'metadata of {path}')
    write_json(metadata.metadata_path(path), meta)
    return meta


def _log1p_to_onnx(ctx, node, name, args):
    """tf2onnx 1.17 has no Log1p (DreamerV3's symlog): rewrite it as Log(1 + x).

    Log(1 + x) loses relative precision only where |x| < 1e-7, where both
    round to x within float32's absolute error, far inside the parity tolerance.
    """
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f'{name}_one'), np.array(1, dtype))
    plus = ctx.make_node('Add', [node.input[0], one.output[0]])
    ctx.replace_input(node, node.input[0], plus.output[0], 0)
    node.type = 'Log'
