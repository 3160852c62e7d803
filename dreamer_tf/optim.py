"""Adam with global-norm clipping, decoupled weight decay and loss scaling.

Written as a `tf.Module` holding its slots as `tf.Variable`s so that it is
checkpointed with `tf.train.Checkpoint`, compiles under XLA, and needs none
of Keras 3's optimizer machinery (whose `LossScaleOptimizer` offers no
custom-step API).

Where epsilon enters is a per-preset choice, because the papers' optimisers
differ there (`eps_form`):
- `keras` (tf.keras / TF1 Adam, which PlaNet, DreamerV1 and DreamerV2 used):
  var -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), i.e. epsilon is
  added before bias correction and acts as eps / sqrt(1 - b2^t) early on;
- `optax` (optax.scale_by_adam, which DreamerV3's code uses):
  var -= lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).
They agree once sqrt(1 - b2^t) is near 1 (some thousand steps at b2 = 0.999).

A step whose gradients are not finite is skipped (no variable or slot
changes) and counted in `skipped`. With `loss_scale=True` (float16) the
loss is multiplied by a dynamic scale that halves after a non-finite step
and doubles after `growth_interval` finite ones.
"""

import tensorflow as tf

EPS_FORMS = ('keras', 'optax')


class Adam(tf.Module):
    def __init__(
        self,
        variables,
        *,
        lr,
        eps=1e-8,
        clip=0.0,
        wd=0.0,
        eps_form='keras',
        beta1=0.9,
        beta2=0.999,
        loss_scale=False,
        growth_interval=1000,
        name=None,
    ):
        super().__init__(name=name)
        self.params = list(variables)
        if not self.params:
            raise ValueError(f'optimizer {name} got no variables to train')
        if eps_form not in EPS_FORMS:
            raise ValueError(f'eps_form must be one of {EPS_FORMS}, got {eps_form!r}')
        self.lr, self.eps, self.clip, self.wd = lr, eps, clip, wd
        self.eps_form = eps_form
        self.beta1, self.beta2 = beta1, beta2
        with self.name_scope:
            self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name='m') for v in self.params]
            self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name='v') for v in self.params]
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
            self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name='skipped')
            self.use_scale = loss_scale
            self.growth_interval = growth_interval
            self.scale = tf.Variable(2.0**15 if loss_scale else 1.0, trainable=False, name='scale')
            self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name='good_steps')

    def gradients(self, tape, loss):
        """d(loss * scale)/d(params), the scale entering as the output gradient.

        Scaling through `output_gradients` rather than multiplying the loss
        keeps the scale on the tape's path whenever the tape closed before
        this call (a product formed after it would not be recorded, and every
        gradient would come back as zero). Zeros, not None, for parameters the
        loss does not reach: replicas reduce every gradient.
        """
        scale = tf.cast(self.scale, loss.dtype) if self.use_scale else None
        return tape.gradient(
            loss,
            self.params,
            output_gradients=scale,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )

    def apply(self, grads):
        """Unscale, clip and apply `grads` (aligned with the variables); returns metrics."""
        grads = [tf.cast(g, tf.float32) for g in grads]
        if self.use_scale:
            grads = [g / self.scale for g in grads]
        norm = tf.linalg.global_norm(grads)
        finite = tf.math.is_finite(norm)
        if self.clip:
            factor = tf.minimum(1.0, self.clip / tf.maximum(norm, 1e-6))
            grads = [g * factor for g in grads]
        tf.cond(finite, lambda: self._update(grads), self._skip)
        if self.use_scale:
            self._update_scale(finite)
        return {
            'grad_norm': norm,
            'grad_finite': tf.cast(finite, tf.float32),
            'loss_scale': tf.identity(self.scale),
        }

    def _update(self, grads):
        step = self.step.assign_add(1)
        t = tf.cast(step, tf.float32)
        correct1, correct2 = 1 - self.beta1**t, 1 - self.beta2**t
        lr = self.lr * tf.sqrt(correct2) / correct1
        # optax's m_hat / (sqrt(v_hat) + eps) equals this form with eps * sqrt(1 - b2^t).
        eps = self.eps if self.eps_form == 'keras' else self.eps * tf.sqrt(correct2)
        for var, g, m, v in zip(self.params, grads, self.m, self.v):
            m.assign(self.beta1 * m + (1 - self.beta1) * g)
            v.assign(self.beta2 * v + (1 - self.beta2) * tf.square(g))
            if self.wd:
                # danijar/dreamerv2 common/tfutils.py `Optimizer._apply_weight_decay`:
                # var <- (1 - wd) var before the Adam step, not lr-scaled, on every
                # variable (its default wd_pattern '.*': biases and norm scales too).
                var.assign((1 - self.wd) * var)
            var.assign_sub(lr * m / (tf.sqrt(v) + eps))
        return tf.constant(True)

    def _skip(self):
        self.skipped.assign_add(1)
        return tf.constant(False)

    def _update_scale(self, finite):
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
        self.scale.assign(
            tf.where(grow, self.scale * 2, tf.where(finite, self.scale, self.scale / 2))
        )
        self.good_steps.assign(
            tf.where(finite & ~grow, self.good_steps + 1, tf.zeros_like(self.good_steps))
        )


def prefixed(name, metrics):
    """An optimiser's metrics under its role's name: `actor_grad_norm`, ..."""
    return {f'{name}_{k}': v for k, v in metrics.items()}
