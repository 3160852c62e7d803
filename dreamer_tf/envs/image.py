"""Dependency-free image resizing for observations."""

import numpy as np


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
