"""Dependency-free image resizing for observations."""

import functools

import numpy as np

# The exported policy's runtime resizes as training does: one function for both.
from dreamer_tf_runtime.observations import resize  # noqa: F401


@functools.lru_cache(maxsize=16)
def _area_taps(size_in, size_out):
    """Input indices and weights, each (size_out, taps), of area averaging.

    Output pixel j covers the input interval [j * s, (j + 1) * s) with
    s = size_in / size_out; each input pixel contributes its overlap with that
    interval, divided by s so that every output's weights sum to 1. At most
    ceil(s) + 1 input pixels overlap one output pixel, so the weights are kept
    as a few taps per output rather than a dense matrix.
    """
    scale = size_in / size_out
    starts = np.arange(size_out)[:, None] * scale
    first = np.floor(starts).astype(np.int64)
    taps = int(np.ceil(scale)) + 1
    pixels = first + np.arange(taps)[None, :]
    overlap = np.minimum(pixels + 1, starts + scale) - np.maximum(pixels, starts)
    weights = np.where(pixels < size_in, np.clip(overlap, 0, None), 0) / scale
    return np.minimum(pixels, size_in - 1), weights.astype(np.float32)


def area_resize(image, size):
    """Shrinks an HxWxC uint8 image by area averaging, for any ratio.

    This is OpenCV's INTER_AREA for shrinking, which the DreamerV2 Atari
    pipeline used (gym's AtariPreprocessing). It gathers a few taps per output
    pixel and sums them with einsum instead of multiplying dense weight
    matrices: numpy's threaded BLAS took 2-9 ms per 210x160 frame on a busy
    2-core CPU, the taps take 0.06 ms (grey) to 0.3 ms (colour) on one core.
    """
    height, width = size
    in_height, in_width = image.shape[:2]
    if height > in_height or width > in_width:
        raise ValueError(
            f'area_resize only shrinks images; got {in_height}x{in_width} -> {height}x{width}.')
    rows, row_weights = _area_taps(in_height, height)
    cols, col_weights = _area_taps(in_width, width)
    out = np.einsum('hkwc,hk->hwc', image.astype(np.float32)[rows], row_weights)
    out = np.einsum('hwkc,wk->hwc', out[:, cols], col_weights)
    return np.round(out).astype(np.uint8)
