"""Neural-network layers as plain `tf.Module`s holding `tf.Variable`s.

Keras 3 layers nested in a `tf.Module` are invisible to `trainable_variables`
(Keras 3 tracks its own variables, not tf.Module's), so every weight here is a
`tf.Variable` owned by a module, in the style of Sonnet 2. Variables are float32;
each layer casts its weights to the dtype of its input, so mixed precision is
chosen by the caller casting the network input (`compute_dtype`). All shapes are
known at construction, so no variable is ever created inside a `tf.function`.
"""

import math

import tensorflow as tf

ACTIVATIONS = {
    'none': tf.identity,
    'elu': tf.nn.elu,
    'relu': tf.nn.relu,
    'silu': tf.nn.silu,
    'tanh': tf.tanh,
}


def get_act(name):
    if name not in ACTIVATIONS:
        raise ValueError(f'unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}')
    return ACTIVATIONS[name]


def _glorot(shape, fan_in, fan_out, scale=1.0):
    # Variance 2 / (fan_in + fan_out): the same variance as DreamerV3's
    # truncated-normal fan_avg initialiser and Keras' glorot_uniform (V1/V2).
    limit = math.sqrt(3 * scale * 2.0 / (fan_in + fan_out))
    return tf.random.uniform(shape, -limit, limit, dtype=tf.float32)


def dot(x, w):
    """x @ w over the last axis of x, with the float32 weight cast to x's dtype."""
    w = tf.cast(w, x.dtype)
    return tf.matmul(x, w) if x.shape.rank == 2 else tf.tensordot(x, w, 1)


class Linear(tf.Module):
    """y = x W + b. `outscale=0` zero-initialises W (DreamerV3's reward/critic heads)."""

    def __init__(self, din, dout, bias=True, outscale=1.0, name=None):
        super().__init__(name=name)
        self.din, self.dout = int(din), int(dout)
        init = (
            tf.zeros((self.din, self.dout))
            if outscale == 0
            else _glorot((self.din, self.dout), self.din, self.dout, outscale)
        )
        self.w = tf.Variable(init, name='w')
        self.b = tf.Variable(tf.zeros((self.dout,)), name='b') if bias else None

    def __call__(self, x):
        return self.add_bias(dot(x, self.w))

    def add_bias(self, y):
        return y if self.b is None else y + tf.cast(self.b, y.dtype)

    def split(self, sizes):
        """W cut by input rows: for x = [x_1, ..., x_n], x W = sum_i x_i W_i, so a part
        that a loop does not change can be multiplied once outside the loop."""
        return tf.split(self.w, sizes, 0)


class LayerNorm(tf.Module):
    """Layer normalisation over the last axis; statistics in float32."""

    def __init__(self, dim, eps=1e-3, name=None):
        super().__init__(name=name)
        self.eps = eps
        self.scale = tf.Variable(tf.ones((dim,)), name='scale')
        self.offset = tf.Variable(tf.zeros((dim,)), name='offset')

    def __call__(self, x):
        y = layer_norm(tf.cast(x, tf.float32), tf.convert_to_tensor(self.scale),
                       tf.convert_to_tensor(self.offset), self.eps)
        return tf.cast(y, x.dtype)


def layer_norm(x, scale, offset, eps):
    """(x - mean) / sqrt(var + eps) * scale + offset over the last axis, with the analytic
    gradient: autodiff of the same expression keeps about twice the intermediates for
    the backward pass, and inside a scan each is an accumulator written every step."""

    @tf.custom_gradient
    def forward(x, scale, offset):
        mean, var = tf.nn.moments(x, [-1], keepdims=True)
        rstd = tf.math.rsqrt(var + eps)
        xhat = (x - mean) * rstd

        def grad(dy):
            # d/dx of xhat: rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * scale.
            g = dy * scale
            mean_g = tf.reduce_mean(g, -1, keepdims=True)
            mean_gx = tf.reduce_mean(g * xhat, -1, keepdims=True)
            batch = list(range(x.shape.rank - 1))
            dscale = tf.reduce_sum(dy * xhat, batch)
            return rstd * (g - mean_g - xhat * mean_gx), dscale, tf.reduce_sum(dy, batch)

        return xhat * scale + offset, grad

    return forward(x, scale, offset)


class Dense(tf.Module):
    """Linear -> optional LayerNorm -> activation: the unit block of every MLP."""

    def __init__(self, din, dout, act='silu', norm='none', name=None):
        super().__init__(name=name)
        self.linear = Linear(din, dout, bias=(norm == 'none'))
        self.norm = LayerNorm(dout) if norm == 'layer' else None
        if norm not in ('none', 'layer'):
            raise ValueError(f"unknown norm {norm!r}; choose 'none' or 'layer'")
        self.act = get_act(act)

    def __call__(self, x):
        return self.activate(self.linear(x))

    def activate(self, x):
        """Norm and activation of the pre-activation x W (+ b)."""
        if self.norm is not None:
            x = self.norm(x)
        return self.act(x)


class MLP(tf.Module):
    """A stack of `layers` Dense blocks of width `units` (no output layer)."""

    def __init__(self, din, layers, units, act='silu', norm='none', name=None):
        super().__init__(name=name)
        self.layers = []
        for i in range(layers):
            self.layers.append(Dense(din, units, act, norm, name=f'dense{i}'))
            din = units
        self.dout = din

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class GRUCell(tf.Module):
    """GRU with one fused linear layer over [input, state], as in DreamerV2/V3.

    Gates: reset r, candidate c = tanh(r * W_c[x, h]), update u = sigmoid(W_u[x, h]
    + update_bias); h' = u * c + (1 - u) * h. DreamerV2/V3 use LayerNorm on the
    fused pre-activations and update_bias -1 (danijar/dreamerv2 common/nets.py);
    DreamerV1 used tf.keras' GRUCell, reproduced here with norm off and bias 0
    (the reset gate then multiplies the whole candidate pre-activation, not only
    its recurrent part: a documented, minor deviation from Keras' cell).
    """

    def __init__(self, din, size, norm=True, update_bias=-1.0, name=None):
        super().__init__(name=name)
        self.size = size
        self.update_bias = update_bias
        self.linear = Linear(din + size, 3 * size, bias=not norm)
        self.norm = LayerNorm(3 * size) if norm else None

    def __call__(self, x, h):
        parts = self.linear(tf.concat([x, tf.cast(h, x.dtype)], -1))
        if self.norm is not None:
            parts = self.norm(parts)
        reset, cand, update = tf.split(parts, 3, -1)
        reset = tf.sigmoid(reset)
        cand = tf.tanh(reset * cand)
        update = tf.sigmoid(update + self.update_bias)
        return update * cand + (1 - update) * tf.cast(h, x.dtype)


class Conv2D(tf.Module):
    """NHWC convolution."""

    def __init__(self, cin, cout, kernel, stride=1, padding='SAME', name=None):
        super().__init__(name=name)
        self.stride, self.padding = stride, padding.upper()
        fan_in, fan_out = kernel * kernel * cin, kernel * kernel * cout
        self.w = tf.Variable(_glorot((kernel, kernel, cin, cout), fan_in, fan_out), name='w')
        self.b = tf.Variable(tf.zeros((cout,)), name='b')

    def __call__(self, x):
        y = tf.nn.conv2d(x, tf.cast(self.w, x.dtype), self.stride, self.padding)
        return y + tf.cast(self.b, x.dtype)


class ConvTranspose2D(tf.Module):
    """NHWC transposed convolution with a statically known output size."""

    def __init__(self, cin, cout, kernel, stride=2, padding='SAME', name=None):
        super().__init__(name=name)
        self.kernel, self.stride, self.padding = kernel, stride, padding.upper()
        self.cout = cout
        fan_in, fan_out = kernel * kernel * cin, kernel * kernel * cout
        self.w = tf.Variable(_glorot((kernel, kernel, cout, cin), fan_in, fan_out), name='w')
        self.b = tf.Variable(tf.zeros((cout,)), name='b')

    def out_size(self, size):
        if self.padding == 'SAME':
            return size * self.stride
        return (size - 1) * self.stride + self.kernel

    def __call__(self, x):
        h, w = x.shape[1], x.shape[2]
        if (h, w) == (1, 1) and self.padding == 'VALID':
            # From a 1x1 input every output pixel is one kernel tap, so the op is one matmul
            # (the V1/V2 decoder's first layer); TF's CPU kernel is far slower (docs/speed.md).
            kernel = tf.reshape(tf.cast(self.w, x.dtype), [-1, self.w.shape[3]])
            y = tf.matmul(tf.reshape(x, [-1, x.shape[3]]), kernel, transpose_b=True)
            y = tf.reshape(y, [-1, self.kernel, self.kernel, self.cout])
            return y + tf.cast(self.b, x.dtype)
        shape = tf.stack([tf.shape(x)[0], self.out_size(h), self.out_size(w), self.cout])
        y = tf.nn.conv2d_transpose(x, tf.cast(self.w, x.dtype), shape, self.stride, self.padding)
        return y + tf.cast(self.b, x.dtype)

