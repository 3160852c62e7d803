"""The metadata JSON written beside every exported model: what a runtime needs to run it.

numpy and the standard library only.

The exported step has these inputs, in this order:
    one per observation key (its own shape and dtype, e.g. uint8 images),
    `is_first` (bool [B]), `prev_action` (float32 [B, A]),
    `deter` (float32 [B, D]), `stoch` (float32 [B, S]),
    stochastic exports only: `latent_noise`, `action_noise` (see `noise`);
and outputs `action` (float32 [B, A]), `next_deter`, `next_stoch`. Outputs are
named apart from inputs because tf2onnx fails on a signature whose input and
output share a name.
"""

import json
from pathlib import Path

import numpy as np

from dreamer_tf_runtime import observations

FORMAT_VERSION = 1
STATE_KEYS = ('deter', 'stoch')
STEP_OUTPUTS = ('action', 'next_deter', 'next_stoch')
CONTROL_INPUTS = ('is_first', 'prev_action', 'deter', 'stoch')
NOISE_INPUTS = ('latent_noise', 'action_noise')
RESERVED = frozenset(CONTROL_INPUTS + NOISE_INPUTS + STEP_OUTPUTS)
FORMATS = ('savedmodel', 'onnx', 'tflite')
MODES = ('deterministic', 'stochastic')
REQUIRED = (
    'format_version',
    'format',
    'mode',
    'preset',
    'task',
    'train_step',
    'checkpoint',
    'observations',
    'action_space',
    'state',
    'initial_state',
    'inputs',
    'outputs',
    'noise',
    'env',
)
# Optional: `preprocess`, how the env's own observations become the model's inputs
# (dreamer_tf_runtime.observations); absent where the env's preprocessing is not recorded.


class MetadataError(ValueError):
    """A metadata file that is missing, unreadable or does not describe a policy step."""


def metadata_path(model_path):
    """The metadata of `model.onnx` is `model.onnx.json` (likewise for a SavedModel folder)."""
    return Path(str(Path(model_path)) + '.json')


def read(model_path):
    """Reads and checks the metadata beside `model_path`; returns a dict."""
    path = metadata_path(model_path)
    try:
        with open(path) as file:
            meta = json.load(file)
    except FileNotFoundError:
        raise MetadataError(
            f'no metadata at {path}: the exporter writes <model>.json beside each model'
        ) from None
    except json.JSONDecodeError as error:
        raise MetadataError(f'{path} is not valid JSON: {error}') from None
    check(meta, path)
    return meta


def check(meta, source='metadata'):
    """Raises MetadataError unless `meta` has the fields a runtime relies on."""
    if not isinstance(meta, dict):
        raise MetadataError(f'{source}: expected a JSON object, got {type(meta).__name__}')
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise MetadataError(f'{source}: missing fields {missing}')
    if meta['format_version'] != FORMAT_VERSION:
        raise MetadataError(
            f'{source}: format_version {meta["format_version"]} is not supported '
            f'(this runtime reads version {FORMAT_VERSION})'
        )
    if meta['format'] not in FORMATS:
        raise MetadataError(f'{source}: format must be one of {FORMATS}, got {meta["format"]!r}')
    if meta['mode'] not in MODES:
        raise MetadataError(f'{source}: mode must be one of {MODES}, got {meta["mode"]!r}')
    space = meta['action_space']
    if space.get('discrete') is not True and space.get('discrete') is not False:
        raise MetadataError(f'{source}: action_space.discrete must be true or false')
    if not space['discrete'] and not ('low' in space and 'high' in space):
        raise MetadataError(f'{source}: a continuous action_space needs low and high')
    for key in (*STATE_KEYS, 'prev_action'):
        if len(meta['initial_state'].get(key, ())) != meta['state'].get(key, [None])[0]:
            raise MetadataError(f'{source}: initial_state.{key} does not match state.{key}')
    if meta.get('preprocess') is not None:
        try:
            observations.check(meta['preprocess'], f'{source}: preprocess')
        except ValueError as error:
            raise MetadataError(str(error)) from None


def initial_state(meta, batch_size):
    """The recurrent state at an episode start, tiled to `batch_size` rows (float32)."""
    return {
        key: np.tile(np.asarray(meta['initial_state'][key], np.float32), (batch_size, 1))
        for key in (*STATE_KEYS, 'prev_action')
    }
