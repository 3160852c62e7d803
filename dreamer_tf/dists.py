"""Distributions the Dreamer papers use that TFP does not provide directly.

All distribution parameters are float32 regardless of the network's compute
dtype: heads cast their outputs before building a distribution, so losses
and sampling stay in full precision under mixed precision.

Sampling takes a stateless seed (a shape-[2] int tensor) so that it is
reproducible, compiles under XLA, and uses explicit noise ops (Gumbel-max,
mean + std * noise) that also convert to ONNX/TFLite.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from dreamer_tf import distribute

tfd = tfp.distributions
sg = tf.stop_gradient


def symlog(x):
    """symlog(x) = sign(x) ln(|x| + 1)  (DreamerV3, eq. 9)."""
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def symexp(x):
    """symexp(x) = sign(x) (exp(|x|) - 1), the inverse of symlog (DreamerV3, eq. 9)."""
    return tf.sign(x) * tf.math.expm1(tf.abs(x))


class MSE:
    """A point prediction scored by negative squared error summed over event dims.

    With `symlog=True` the prediction lives in symlog space and the target is
    squashed before comparison (DreamerV3's symlog MSE for vector decoders,
    eq. 10); the mode is then symexp of the prediction.
    """

    def __init__(self, pred, event_dims=1, symlog_space=False):
        self.pred = tf.cast(pred, tf.float32)
        self.axes = list(range(-event_dims, 0))
        self.symlog_space = symlog_space

    def mode(self):
        return symexp(self.pred) if self.symlog_space else self.pred

    mean = mode

    def log_prob(self, value):
        value = tf.cast(value, tf.float32)
        target = symlog(value) if self.symlog_space else value
        return -tf.reduce_sum(tf.square(self.pred - target), self.axes)


class UnitNormal:
    """Normal with unit variance over `event_dims` dims (Dreamer V1/V2 decoders and heads)."""

    def __init__(self, mean, event_dims=0):
        self.loc = tf.cast(mean, tf.float32)
        self.axes = list(range(-event_dims, 0))

    def mode(self):
        return self.loc

    mean = mode

    def log_prob(self, value):
        sq = tf.square(tf.cast(value, tf.float32) - self.loc)
        logp = -0.5 * sq - 0.5 * np.log(2 * np.pi)
        return tf.reduce_sum(logp, self.axes) if self.axes else logp


def twohot_encode(x, bins):
    """Two-hot encoding of scalars `x` onto sorted `bins` (DreamerV3, eq. 11).

    The weight is split between the two nearest bins in inverse proportion to
    the distance, so that sum(weights * bins) == x inside the bin range; values
    outside the range go wholly to the end bin.
    """
    x = tf.cast(x, tf.float32)
    n = bins.shape[0]
    below = tf.reduce_sum(tf.cast(bins[None] <= x[..., None], tf.int32), -1) - 1
    above = n - tf.reduce_sum(tf.cast(bins[None] > x[..., None], tf.int32), -1)
    below = tf.clip_by_value(below, 0, n - 1)
    above = tf.clip_by_value(above, 0, n - 1)
    equal = tf.equal(below, above)
    dist_below = tf.where(equal, 1.0, tf.abs(tf.gather(bins, below) - x))
    dist_above = tf.where(equal, 1.0, tf.abs(tf.gather(bins, above) - x))
    total = dist_below + dist_above
    weight_below = dist_above / total
    weight_above = dist_below / total
    return (
        tf.one_hot(below, n) * weight_below[..., None]
        + tf.one_hot(above, n) * weight_above[..., None]
    )


class SymlogTwoHot:
    """Categorical over bins in symlog space, trained with two-hot targets.

    DreamerV3's reward and critic distribution (eq. 11): log_prob(y) =
    twohot(symlog(y)) . log_softmax(logits); the prediction is
    symexp(softmax(logits) . bins). `bins` default to linspace(-20, 20, 255).
    """

    def __init__(self, logits, low=-20.0, high=20.0):
        self.logits = tf.cast(logits, tf.float32)
        self.bins = tf.linspace(low, high, self.logits.shape[-1])

    def mean(self):
        probs = tf.nn.softmax(self.logits)
        return symexp(tf.reduce_sum(probs * self.bins, -1))

    mode = mean

    def log_prob(self, value):
        target = twohot_encode(symlog(value), self.bins)
        return tf.reduce_sum(target * tf.nn.log_softmax(self.logits), -1)


class Bernoulli:
    """Bernoulli from logits; `mode()` is the thresholded probability."""

    def __init__(self, logits):
        self.logits = tf.cast(logits, tf.float32)

    def mean(self):
        return tf.sigmoid(self.logits)

    def mode(self):
        return tf.cast(self.logits > 0, tf.float32)

    def log_prob(self, value):
        value = tf.cast(value, tf.float32)
        return -(value * tf.nn.softplus(-self.logits) + (1 - value) * tf.nn.softplus(self.logits))


def unimix_logits(logits, unimix):
    """Mix the softmax with a uniform distribution: (1 - u) softmax + u / K (DreamerV3,
    sec. 'Unimix')."""
    logits = tf.cast(logits, tf.float32)
    if not unimix:
        return logits
    probs = tf.nn.softmax(logits)
    probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return tf.math.log(probs)


def gumbel_argmax(logits, seed):
    """Index sampled from Categorical(logits) by the Gumbel-max trick."""
    u = distribute.stateless_uniform(tf.shape(logits), seed, minval=1e-20, maxval=1.0)
    return tf.argmax(logits - tf.math.log(-tf.math.log(u)), -1, output_type=tf.int32)


class OneHot:
    """One-hot categorical with straight-through gradients (DreamerV2, sec. 2, alg. 1).

    A sample is the one-hot of a drawn class plus `(probs - stop_gradient(probs))`,
    exactly the one-hot in value (the bracket is zero) with the gradient of the
    probabilities. The mode is the one-hot of the most likely class with no gradient,
    as tfd.OneHotCategorical's in the authors' code (danijar/dreamerv3 2023 jaxutils.py
    `OneHotDist`; their learned initial state takes this mode, nets.py `get_stoch`).
    Pass logits already mixed with `unimix_logits` for DreamerV3's 1% mix.
    """

    def __init__(self, logits):
        self.logits = tf.cast(logits, tf.float32)
        self.probs = tf.nn.softmax(self.logits)

    def sample(self, seed):
        onehot = tf.one_hot(gumbel_argmax(self.logits, seed), self.logits.shape[-1])
        return onehot + (self.probs - sg(self.probs))

    def mode(self):
        onehot = tf.one_hot(tf.argmax(self.logits, -1, output_type=tf.int32), self.logits.shape[-1])
        # Zero in value and gradient, but NaN for a NaN or inf logit: a poisoned state
        # then stays visible instead of passing as class 0 (the runtime refuses it).
        return onehot + sg(0.0 * tf.reduce_sum(self.logits, -1, keepdims=True))

    def log_prob(self, onehot):
        return tf.reduce_sum(tf.cast(onehot, tf.float32) * tf.nn.log_softmax(self.logits), -1)

    def entropy(self):
        return -tf.reduce_sum(self.probs * tf.nn.log_softmax(self.logits), -1)


class Normal:
    """Diagonal Normal over the last axis, reparameterised, optionally tanh-squashed.

    `squash=True` is DreamerV1's tanh-transformed Normal (sec. 3, 'Action
    model'): the sample is tanh(mean + std * eps). Its mode, the evaluation
    action, is the density's maximum (`tanh_normal_mode`), which V1's code
    estimates as the most likely of 100 samples (danijar/dreamer `SampleDist`);
    it is not tanh(mean) unless std is small. Its entropy is not needed (V1
    uses no entropy bonus) and is not defined here.
    """

    def __init__(self, mean, std, squash=False):
        self.loc = tf.cast(mean, tf.float32)
        self.std = tf.cast(std, tf.float32)
        self.squash = squash

    def sample(self, seed):
        x = self.loc + self.std * distribute.stateless_normal(tf.shape(self.loc), seed)
        return tf.tanh(x) if self.squash else x

    def mode(self):
        return tanh_normal_mode(self.loc, self.std) if self.squash else self.loc

    def log_prob(self, value):
        if self.squash:
            raise NotImplementedError('tanh-Normal log_prob is not used by any preset')
        z = (tf.cast(value, tf.float32) - self.loc) / self.std
        return tf.reduce_sum(
            -0.5 * tf.square(z) - tf.math.log(self.std) - 0.5 * np.log(2 * np.pi), -1
        )

    def entropy(self):
        if self.squash:
            raise NotImplementedError('tanh-Normal entropy is not used by any preset')
        return tf.reduce_sum(0.5 + 0.5 * np.log(2 * np.pi) + tf.math.log(self.std), -1)


def tanh_normal_mode(mean, std, iterations=20):
    """The mode of a = tanh(x), x ~ N(mean, std), per dimension.

    The density of a is N(atanh a; mean, std) / (1 - a^2), so in x the mode
    maximises f(x) = -(x - mean)^2 / (2 std^2) + 2 log cosh x, where
    f'(x) = 0 reads x = mean + 2 std^2 tanh x. f(x) - f(-x) = 2 x mean / std^2,
    so the maximum lies on the side of sign(mean), and there
    g(x) = mean + 2 std^2 tanh x - x has exactly one root. g is concave on that
    side and x0 = mean + 2 std^2 sign(mean) lies beyond the root, so Newton's
    steps fall monotonically onto it. For a large std the root is near
    mean + 2 std^2 and the mode is the bound (DreamerV1's bang-bang evaluation
    early in training); for a small one it approaches tanh(mean). 20 steps
    reach it to 1e-4 in a over mean in [-5, 5], std in [1e-4, 10]
    (tests/test_math.py); the slowest case, mean = 0 at std = 1/sqrt(2), where
    the density is flat to fourth order, ends within 1e-3.
    """
    s2 = 2.0 * tf.square(std)
    x = mean + s2 * tf.where(mean >= 0.0, 1.0, -1.0)
    for _ in range(iterations):
        t = tf.tanh(x)
        # g' < 0 on the iterates; the bound only keeps a float tie from dividing by 0.
        slope = tf.minimum(s2 * (1.0 - t * t) - 1.0, -1e-6)
        x = x - (mean + s2 * t - x) / slope
    return tf.tanh(x)


class TruncNormal:
    """Normal truncated to [-1, 1], DreamerV2's continuous actor (danijar/dreamerv2 'trunc_normal').

    Densities and entropy are TFP's TruncatedNormal. Samples are drawn by
    inverting the CDF, x = mu + sigma Phi^-1(Phi(a) + u (Phi(b) - Phi(a))),
    a, b = (-1 - mu) / sigma, (1 - mu) / sigma, u ~ U(0, 1): reparameterised
    (the pathwise gradient equals TFP's implicit one) and elementwise in u,
    so a row's sample does not depend on the rest of the batch (which lets
    replicas draw exactly what one device draws, dreamer_tf/distribute.py).
    With mu = tanh(.) in [-1, 1], a <= 0 <= b and Phi(a) <= 0.5 <= Phi(b),
    so float32 loses nothing but tails beyond about 5 sigma.
    """

    def __init__(self, mean, std):
        self.loc = tf.cast(mean, tf.float32)
        self.std = tf.cast(std, tf.float32)
        self.dist = tfd.Independent(tfd.TruncatedNormal(self.loc, self.std, -1.0, 1.0), 1)

    def sample(self, seed):
        low = _normal_cdf((-1.0 - self.loc) / self.std)
        high = _normal_cdf((1.0 - self.loc) / self.std)
        u = distribute.stateless_uniform(tf.shape(self.loc), seed)
        p = tf.clip_by_value(low + u * (high - low), 1e-7, 1.0 - 1e-7)
        return tf.clip_by_value(self.loc + self.std * tf.math.ndtri(p), -1.0, 1.0)

    def mode(self):
        return self.dist.distribution.loc

    def log_prob(self, value):
        return self.dist.log_prob(value)

    def entropy(self):
        return self.dist.entropy()


def _normal_cdf(x):
    return 0.5 * tf.math.erfc(-x / np.sqrt(2.0))


def kl_categorical(post_logits, prior_logits):
    """KL(post || prior) of independent categoricals, summed over the groups axis [..., G, C]."""
    post_logp = tf.nn.log_softmax(post_logits)
    prior_logp = tf.nn.log_softmax(prior_logits)
    kl = tf.reduce_sum(tf.exp(post_logp) * (post_logp - prior_logp), -1)
    return tf.reduce_sum(kl, -1)


def kl_normal(post_mean, post_std, prior_mean, prior_std):
    """KL(post || prior) of diagonal Normals, summed over the last axis."""
    var_ratio = tf.square(post_std / prior_std)
    mean_term = tf.square((post_mean - prior_mean) / prior_std)
    kl = 0.5 * (var_ratio + mean_term - 1 - tf.math.log(var_ratio))
    return tf.reduce_sum(kl, -1)
