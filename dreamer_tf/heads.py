"""Observation encoder, observation decoder and scalar prediction heads.

Observations are dicts. Keys with rank-3 shapes (H, W, C) are images, fed
to a CNN as uint8 and scaled to [-0.5, 0.5] only inside the first layer;
rank-1 keys are vectors, fed to an MLP (symlog-squashed for DreamerV3). Both
kinds may be present at once; their features are concatenated.

Two CNN layouts reproduce the papers:
- `cnn_padding: valid` (DreamerV1/V2, danijar/dreamer): 4 convolutions, kernel 4,
    stride 2, 64 -> 31 -> 14 -> 6 -> 2; the decoder maps the feature to a 1x1
    map and applies transposed convolutions with kernels 5, 5, 6, 6.
- `cnn_padding: same` (DreamerV3): stride-2 kernel-4 convolutions halving the
    resolution down to 4x4, LayerNorm + SiLU after each; the decoder mirrors it.
- `cnn_stride: 1` (DreamerV2 on MinAtar's 10x10 grids, RajGhugare19/dreamerv2
    models/pixel.py): 3 convolutions, kernel 3, stride 1, no padding, depths
    d, 2d, 4d (10 -> 8 -> 6 -> 4); the decoder maps the feature linearly to the
    4x4x4d map and applies transposed convolutions back to 10x10xC. Their
    encoder also projected the 4x4x4d feature linearly to 200 numbers before
    the posterior's first layer, itself linear: here the feature feeds it
    directly.
"""

import re

import numpy as np
import tensorflow as tf

from dreamer_tf import dists, nn

STAGES = 4
# cnn_stride 1 (MinAtar): 3 unpadded kernel-3 convolutions.
GRID_STAGES, GRID_KERNEL = 3, 3


def image_to_float(image, dtype):
    return tf.cast(image, dtype) / 255.0 - 0.5


def split_keys(obs_space, cnn_pattern, mlp_pattern):
    """Image keys and vector keys of `obs_space` selected by regex patterns."""
    cnn, mlp = [], []
    for key, space in obs_space.items():
        rank = len(space.shape)
        if rank == 3 and re.fullmatch(cnn_pattern, key):
            cnn.append(key)
        elif rank == 1 and re.fullmatch(mlp_pattern, key):
            mlp.append(key)
        elif rank not in (1, 3):
            raise ValueError(
                f'observation {key!r} has shape {tuple(space.shape)}: only images (H, W, C) '
                'and vectors (D,) are supported; flatten or reshape it in the env wrapper'
            )
    if not cnn and not mlp:
        raise ValueError(
            f'no observation key matches cnn_keys={cnn_pattern!r} or '
            f'mlp_keys={mlp_pattern!r}; observation keys: {sorted(obs_space)}'
        )
    return sorted(cnn), sorted(mlp)


def _image_shape(obs_space, keys):
    shapes = {tuple(obs_space[k].shape[:2]) for k in keys}
    if len(shapes) != 1:
        raise ValueError(f'image observations {keys} must share one resolution, got {shapes}')
    height, width = shapes.pop()
    channels = sum(obs_space[k].shape[2] for k in keys)
    return height, width, channels


class Encoder(tf.Module):
    def __init__(
        self,
        obs_space,
        *,
        cnn_keys,
        mlp_keys,
        mlp_layers,
        mlp_units,
        cnn_depth,
        cnn_padding,
        act,
        norm,
        symlog,
        cnn_stride=2,
        compute_dtype=tf.float32,
        name='encoder',
    ):
        super().__init__(name=name)
        self.cnn_keys, self.mlp_keys = split_keys(obs_space, cnn_keys, mlp_keys)
        self.symlog, self.dtype = symlog, compute_dtype
        _check_stride(cnn_stride)
        self.padding = cnn_padding.upper() if cnn_stride == 2 else 'VALID'
        self.out_size = 0
        with self.name_scope:
            if self.cnn_keys:
                height, width, channels = _image_shape(obs_space, self.cnn_keys)
                stages, kernel = (STAGES, 4) if cnn_stride == 2 else (GRID_STAGES, GRID_KERNEL)
                self.convs, self.norms = [], []
                for i in range(stages):
                    depth = cnn_depth * 2**i
                    self.convs.append(
                        nn.Conv2D(
                            channels, depth, kernel, cnn_stride, self.padding, name=f'conv{i}'
                        )
                    )
                    self.norms.append(nn.LayerNorm(depth) if norm == 'layer' else None)
                    channels = depth
                    height, width = (
                        _conv_out(height, self.padding, kernel, cnn_stride),
                        _conv_out(width, self.padding, kernel, cnn_stride),
                    )
                if min(height, width) < 1:
                    raise ValueError(
                        f'images of shape {obs_space[self.cnn_keys[0]].shape} are too '
                        f'small for {stages} kernel-{kernel} stride-{cnn_stride} convolutions'
                    )
                self.act = nn.get_act(act)
                self.out_size += height * width * channels
            if self.mlp_keys:
                din = sum(obs_space[k].shape[0] for k in self.mlp_keys)
                self.mlp = nn.MLP(din, mlp_layers, mlp_units, act, norm, name='mlp')
                self.out_size += self.mlp.dout

    def __call__(self, obs):
        """obs: dict of [..., *shape] tensors -> embedding [..., out_size]."""
        outs = []
        if self.cnn_keys:
            x = tf.concat([image_to_float(obs[k], self.dtype) for k in self.cnn_keys], -1)
            lead = tf.shape(x)[:-3]
            x = tf.reshape(x, [-1, *x.shape[-3:]])
            for conv, norm in zip(self.convs, self.norms):
                x = conv(x)
                x = norm(x) if norm is not None else x
                x = self.act(x)
            outs.append(tf.reshape(x, tf.concat([lead, [np.prod(x.shape[1:])]], 0)))
        if self.mlp_keys:
            x = tf.concat([tf.cast(obs[k], tf.float32) for k in self.mlp_keys], -1)
            x = dists.symlog(x) if self.symlog else x
            outs.append(self.mlp(tf.cast(x, self.dtype)))
        return tf.concat(outs, -1)


def _conv_out(size, padding, kernel, stride):
    return -(-size // stride) if padding == 'SAME' else (size - kernel) // stride + 1


def _check_stride(stride):
    if stride not in (1, 2):
        raise ValueError(
            f'cnn_stride must be 2 (64x64 images) or 1 (small grids such as MinAtar), got {stride}'
        )


class Decoder(tf.Module):
    """p(o_t | s_t): a distribution per observation key.

    Vector keys: `vector_dist` 'normal' (unit variance, V1/V2) or 'symlog_mse'
    (DreamerV3 eq. 10). Image keys: `image_dist` 'normal' (unit-variance
    Gaussian on pixels in [-0.5, 0.5], V1/V2) or 'mse' (DreamerV3).
    """

    def __init__(
        self,
        obs_space,
        feat_size,
        *,
        cnn_keys,
        mlp_keys,
        mlp_layers,
        mlp_units,
        cnn_depth,
        cnn_padding,
        act,
        norm,
        vector_dist,
        image_dist,
        cnn_stride=2,
        compute_dtype=tf.float32,
        name='decoder',
    ):
        super().__init__(name=name)
        self.cnn_keys, self.mlp_keys = split_keys(obs_space, cnn_keys, mlp_keys)
        for kind, value, valid in (
            ('vector_dist', vector_dist, ('normal', 'symlog_mse')),
            ('image_dist', image_dist, ('normal', 'mse')),
        ):
            if value not in valid:
                raise ValueError(f'decoder.{kind} must be one of {valid}, got {value!r}')
        self.vector_dist, self.image_dist = vector_dist, image_dist
        _check_stride(cnn_stride)
        self.dtype, self.stride = compute_dtype, cnn_stride
        self.padding = cnn_padding.upper() if cnn_stride == 2 else 'VALID'
        self.act = nn.get_act(act)
        with self.name_scope:
            if self.cnn_keys:
                self._build_cnn(obs_space, feat_size, cnn_depth, norm)
            if self.mlp_keys:
                self.sizes = [obs_space[k].shape[0] for k in self.mlp_keys]
                self.mlp = nn.MLP(feat_size, mlp_layers, mlp_units, act, norm, name='mlp')
                self.mlp_out = nn.Linear(self.mlp.dout, sum(self.sizes), name='mlp_out')

    def _build_cnn(self, obs_space, feat_size, depth, norm):
        height, width, channels = _image_shape(obs_space, self.cnn_keys)
        self.channels = [obs_space[k].shape[2] for k in self.cnn_keys]
        outs = [depth * 4, depth * 2, depth, channels]
        if self.stride == 1:
            shrink = GRID_STAGES * (GRID_KERNEL - 1)
            if min(height, width) <= shrink:
                raise ValueError(
                    f'images of {height}x{width} are too small for {GRID_STAGES} kernel-'
                    f'{GRID_KERNEL} convolutions'
                )
            self.start = (height - shrink, width - shrink, depth * 2 ** (GRID_STAGES - 1))
            kernels, outs = [GRID_KERNEL] * GRID_STAGES, outs[1:]
        elif self.padding == 'SAME':
            if height % 2**STAGES or width % 2**STAGES:
                raise ValueError(f'image size {height}x{width} must be divisible by {2**STAGES}')
            self.start = (height // 2**STAGES, width // 2**STAGES, depth * 8)
            kernels = [4] * STAGES
        else:
            if (height, width) != (64, 64):
                raise ValueError(
                    f'the DreamerV1/V2 decoder (padding valid) needs 64x64 images, '
                    f'got {height}x{width}; use decoder.padding same'
                )
            self.start = (1, 1, depth * 32)
            kernels = [5, 5, 6, 6]
        self.cnn_in = nn.Linear(feat_size, int(np.prod(self.start)), name='cnn_in')
        self.deconvs, self.norms = [], []
        cin = self.start[2]
        for i, (kernel, cout) in enumerate(zip(kernels, outs)):
            self.deconvs.append(
                nn.ConvTranspose2D(cin, cout, kernel, self.stride, self.padding, name=f'deconv{i}')
            )
            last = i == len(kernels) - 1
            self.norms.append(nn.LayerNorm(cout) if norm == 'layer' and not last else None)
            cin = cout

    def __call__(self, feat):
        out = {}
        feat = tf.cast(feat, self.dtype)
        if self.cnn_keys:
            lead = tf.shape(feat)[:-1]
            x = tf.reshape(self.cnn_in(feat), [-1, *self.start])
            for i, (deconv, norm) in enumerate(zip(self.deconvs, self.norms)):
                x = deconv(x)
                if i < len(self.deconvs) - 1:
                    x = self.act(norm(x) if norm is not None else x)
            x = tf.reshape(x, tf.concat([lead, x.shape[1:]], 0))
            for key, part in zip(self.cnn_keys, tf.split(x, self.channels, -1)):
                out[key] = (
                    dists.UnitNormal(part, 3) if self.image_dist == 'normal' else dists.MSE(part, 3)
                )
        if self.mlp_keys:
            x = self.mlp_out(self.mlp(feat))
            for key, part in zip(self.mlp_keys, tf.split(x, self.sizes, -1)):
                out[key] = (
                    dists.UnitNormal(part, 1)
                    if self.vector_dist == 'normal'
                    else dists.MSE(part, 1, symlog_space=True)
                )
        return out

    def targets(self, obs):
        """What each key's distribution scores: images as floats in [-0.5, 0.5]."""
        out = {k: image_to_float(obs[k], tf.float32) for k in self.cnn_keys}
        out.update({k: tf.cast(obs[k], tf.float32) for k in self.mlp_keys})
        return out


class Head(tf.Module):
    """MLP -> scalar distribution: reward, continuation and critic heads.

    dist: 'normal' (unit variance, V1/V2), 'symlog_twohot' (DreamerV3, 255
    bins by default) or 'binary' (Bernoulli, V2 discount / V3 continue head).
    `outscale=0` zero-initialises the output layer (DreamerV3 reward and critic).
    """

    def __init__(
        self,
        din,
        *,
        layers,
        units,
        act,
        norm,
        dist,
        bins=255,
        outscale=1.0,
        compute_dtype=tf.float32,
        name=None,
    ):
        super().__init__(name=name)
        if dist not in ('normal', 'symlog_twohot', 'binary'):
            raise ValueError(
                f"head dist must be 'normal', 'symlog_twohot' or 'binary', got {dist!r}"
            )
        self.dist, self.dtype = dist, compute_dtype
        with self.name_scope:
            self.mlp = nn.MLP(din, layers, units, act, norm, name='mlp')
            self.out = nn.Linear(
                self.mlp.dout, bins if dist == 'symlog_twohot' else 1, outscale=outscale, name='out'
            )

    def __call__(self, feat):
        return self.dist_from(self.raw(feat))

    def raw(self, feat):
        """The network's float32 output: the distribution's parameters."""
        return tf.cast(self.out(self.mlp(tf.cast(feat, self.dtype))), tf.float32)

    def dist_from(self, x):
        if self.dist == 'symlog_twohot':
            return dists.SymlogTwoHot(x)
        x = tf.squeeze(x, -1)
        return dists.UnitNormal(x) if self.dist == 'normal' else dists.Bernoulli(x)
