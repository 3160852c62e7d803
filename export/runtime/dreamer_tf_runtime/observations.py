"""From an environment's own observation to the policy's inputs, as training saw them.

dreamer_tf's env adapters describe their preprocessing as a spec (JSON data, kept in
an exported model's metadata as `preprocess`) and apply it with `preprocess` below,
so that training and a deployed policy transform observations by the same code:

    {'images': [{'key': 'image', 'path': [], 'size': [64, 64]}],
     'vector': [{'path': ['ball'], 'kind': 'box', 'shape': [2]},
                {'path': ['paddle'], 'kind': 'discrete', 'n': 5, 'start': 0}]}

`path` indexes into the observation (Dict keys, Tuple indices; [] is the
observation itself). An image is an H×W×C uint8 array, resized to `size` (None:
kept); with `binary: true` it is an H×W×C bool array of object planes (MinAtar's
state), taken as 0 and 255. The `vector` leaves are flattened to float32 and concatenated in order:
`box` and `multi_binary` as numbers, `discrete` and `multi_discrete` one-hot.

numpy only.
"""

import numpy as np

KINDS = ('box', 'multi_binary', 'discrete', 'multi_discrete')


class ObservationError(ValueError):
    """An observation whose keys, shapes or dtypes do not match the policy's."""


def resize(image, size):
    """Resizes an HxWxC uint8 image to ``size`` = (height, width).

    Integer downscaling averages pixel blocks (area interpolation), which keeps
    thin features visible; any other ratio uses nearest-neighbour sampling.
    """
    height, width = size
    in_height, in_width = image.shape[:2]
    if (in_height, in_width) == (height, width):
        return image
    if in_height % height == 0 and in_width % width == 0:
        fh, fw = in_height // height, in_width // width
        blocks = image.reshape(height, fh, width, fw, image.shape[2])
        return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)
    rows = ((np.arange(height) + 0.5) * in_height / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * in_width / width).astype(np.int64)
    return image[rows][:, cols]


def leaf(obs, path):
    """The part of a (nested) observation at `path`."""
    for key in path:
        try:
            obs = obs[key]
        except (KeyError, IndexError, TypeError):
            raise ObservationError(
                f'the observation has no entry {key!r} (path {list(path)}); the policy reads '
                'the env\'s own observations as training saw them') from None
    return obs


def vector_part(spec, value):
    """One leaf as float32 numbers (`spec`: a `vector` entry)."""
    kind = spec['kind']
    if kind == 'discrete':
        return np.eye(spec['n'], dtype=np.float32)[int(value) - spec['start']]
    if kind == 'multi_discrete':
        index = (np.asarray(value) - np.asarray(spec['start'])).reshape(-1)
        nvec = np.asarray(spec['nvec']).reshape(-1)
        return np.concatenate([np.eye(n, dtype=np.float32)[i] for n, i in zip(nvec, index)])
    return np.asarray(value, np.float32).reshape(-1)


def image_part(spec, value):
    image = np.asarray(value)
    if spec.get('binary'):
        if image.dtype != np.bool_ or image.ndim != 3:
            raise ObservationError(
                f'observation planes at path {spec["path"]}: expected an HxWxC bool array, '
                f'got {image.dtype.name} of shape {image.shape}')
        image = image.astype(np.uint8) * np.uint8(255)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ObservationError(
            f'observation image at path {spec["path"]}: expected an HxWxC uint8 array, got '
            f'{image.dtype.name} of shape {image.shape}')
    return resize(image, spec['size']) if spec.get('size') else image


def preprocess(spec, obs):
    """The policy's input dict (`images` by key, and `vector`) from the env's observation."""
    out = {s['key']: image_part(s, leaf(obs, s['path'])) for s in spec.get('images', ())}
    if spec.get('vector'):
        out['vector'] = np.concatenate(
            [vector_part(s, leaf(obs, s['path'])) for s in spec['vector']])
    return out


def check(spec, source='preprocess'):
    """Raises ValueError unless `spec` is a preprocessing spec this module applies."""
    if not isinstance(spec, dict) or not set(spec) <= {'images', 'vector'}:
        raise ValueError(f'{source}: expected a mapping with images and vector')
    for entry in spec.get('vector', ()):
        if entry.get('kind') not in KINDS:
            raise ValueError(f'{source}: vector kind must be one of {KINDS}, got {entry!r}')
