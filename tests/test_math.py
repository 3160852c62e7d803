"""The papers' math pinned against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf import dists, nn
from dreamer_tf.behavior import ReturnNorm, lambda_return, quantile
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.value_trace import return_to_go
from dreamer_tf.optim import Adam
from dreamer_tf.rssm import RSSM
from dreamer_tf.world_model import kl_loss


def test_lambda_return_hand_computed():
    # r_1..r_3, v_0..v_3, d_1..d_3, lambda 0.5:
    # R_3 = 4; R_2 = 3 + .9 (.5*4 + .5*4) = 6.6; R_1 = 2 + .9 (.5*2 + .5*6.6) = 5.87;
    # R_0 = 1 + .9 (.5*1 + .5*5.87) = 4.0915.
    reward = tf.constant([[1.0], [2.0], [3.0]])
    value = tf.constant([[0.5], [1.0], [2.0], [4.0]])
    discount = tf.fill([3, 1], 0.9)
    got = lambda_return(reward, value, discount, 0.5)[:, 0].numpy()
    np.testing.assert_allclose(got, [4.0915, 5.87, 6.6], rtol=1e-6)


def test_return_to_go_hand_computed():
    # Rewards on reaching steps 0..3 (step 0 is the reset), discount 0.5:
    # G_3 = 0; G_2 = 3; G_1 = 2 + .5 * 3 = 3.5; G_0 = 1 + .5 * 3.5 = 2.75.
    got = return_to_go([0.0, 1.0, 2.0, 3.0], 0.5)
    np.testing.assert_allclose(got, [2.75, 3.5, 3.0, 0.0])
    # Bootstrapped at a time limit with G_3 = 8: G_2 = 3 + .5 * 8 = 7; G_1 = 5.5; G_0 = 3.75.
    got = return_to_go([0.0, 1.0, 2.0, 3.0], 0.5, bootstrap=8.0)
    np.testing.assert_allclose(got, [3.75, 5.5, 7.0, 8.0])


def test_lambda_return_limits():
    reward = tf.constant([[1.0], [2.0], [3.0]])
    value = tf.constant([[0.5], [1.0], [2.0], [4.0]])
    discount = tf.fill([3, 1], 0.5)
    # lambda 0: one-step TD targets r_{t+1} + d v_{t+1}.
    td = lambda_return(reward, value, discount, 0.0)[:, 0].numpy()
    np.testing.assert_allclose(td, [1 + 0.5 * 1, 2 + 0.5 * 2, 3 + 0.5 * 4])
    # lambda 1: discounted rewards bootstrapped with v_H.
    mc = lambda_return(reward, value, discount, 1.0)[:, 0].numpy()
    np.testing.assert_allclose(
        mc, [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4]
    )


def gaussian_rssm():
    return RSSM(1, 1, deter=2, hidden=2, stoch=2, classes=0)


def normal_state(means):
    mean = tf.constant([means], tf.float32)
    return {
        'mean': mean,
        'std': tf.ones_like(mean),
        'deter': tf.zeros((1, 2)),
        'stoch': tf.zeros_like(mean),
    }


def test_kl_balancing_weights_gradients():
    # KL[N(0,1) || N(1,1)] = 0.5 per dim. With alpha 0.8 the prior receives
    # 0.8 of the gradient and the posterior 0.2 (DreamerV2 alg. 2).
    rssm = gaussian_rssm()
    post_mean = tf.Variable([[0.0, 0.0]])
    prior_mean = tf.Variable([[1.0, 1.0]])
    with tf.GradientTape() as tape:
        post = dict(normal_state([0.0, 0.0]), mean=post_mean * 1)
        prior = dict(normal_state([1.0, 1.0]), mean=prior_mean * 1)
        loss, metrics = kl_loss(post, prior, rssm, dyn=0.8, rep=0.2, free=0.0, free_avg=True)
    g_post, g_prior = tape.gradient(loss, [post_mean, prior_mean])
    assert loss.numpy() == pytest.approx(1.0)  # 2 dims x 0.5, weights sum to 1
    assert metrics['kl'].numpy() == pytest.approx(1.0)
    # d KL / d mu_prior = (mu_prior - mu_post) = 1 per dim; d KL / d mu_post = -1.
    np.testing.assert_allclose(g_prior.numpy(), [[0.8, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(g_post.numpy(), [[-0.2, -0.2]], rtol=1e-6)


@pytest.mark.parametrize('preset', ['dreamerv1', 'planet', 'dreamingv1'])
def test_v1_kl_preset_has_the_unbalanced_kl_gradient(preset):
    # DreamerV1/PlaNet minimise max(mean KL[q || p], 3): both posterior and prior get
    # the full gradient of the KL (mean offset 3 per dim: KL 4.5 per dim, above the free nats).
    kl = load_config([preset]).kl
    rssm = gaussian_rssm()
    post_mean, prior_mean = tf.Variable([[0.0, 0.0]]), tf.Variable([[3.0, 3.0]])
    with tf.GradientTape() as tape:
        post = dict(normal_state([0.0, 0.0]), mean=post_mean * 1)
        prior = dict(normal_state([3.0, 3.0]), mean=prior_mean * 1)
        loss, metrics = kl_loss(post, prior, rssm, **dict(kl))
    g_post, g_prior = tape.gradient(loss, [post_mean, prior_mean])
    assert metrics['kl'].numpy() == pytest.approx(9.0)
    np.testing.assert_allclose(g_prior.numpy(), [[3.0, 3.0]], rtol=1e-6)
    np.testing.assert_allclose(g_post.numpy(), [[-3.0, -3.0]], rtol=1e-6)


def test_free_bits_per_step_vs_average():
    rssm = gaussian_rssm()
    # Two batch elements with KL 0.5 and 2.0 (mean offsets 1 and 2 in one dim).
    post = {
        'mean': tf.zeros((2, 2)),
        'std': tf.ones((2, 2)),
        'deter': tf.zeros((2, 2)),
        'stoch': tf.zeros((2, 2)),
    }
    prior_mean = tf.Variable([[1.0, 0.0], [2.0, 0.0]])
    with tf.GradientTape(persistent=True) as tape:
        prior = dict(post, mean=prior_mean * 1)
        per_step, _ = kl_loss(post, prior, rssm, dyn=1.0, rep=0.0, free=1.0, free_avg=False)
        averaged, _ = kl_loss(post, prior, rssm, dyn=1.0, rep=0.0, free=1.0, free_avg=True)
    # DreamerV3: mean(max(1, [0.5, 2])) = 1.5; the clipped element gets no gradient.
    assert per_step.numpy() == pytest.approx(1.5)
    grad = tape.gradient(per_step, prior_mean).numpy()
    np.testing.assert_allclose(grad, [[0.0, 0.0], [1.0, 0.0]], atol=1e-6)
    # V1/V2 free nats on the mean: max(1, 1.25) = 1.25.
    assert averaged.numpy() == pytest.approx(1.25)
    np.testing.assert_allclose(
        tape.gradient(averaged, prior_mean).numpy(), [[0.5, 0.0], [1.0, 0.0]], atol=1e-6
    )


def test_symlog_symexp():
    x = tf.constant([-(math.e - 1), 0.0, math.e - 1])
    np.testing.assert_allclose(dists.symlog(x).numpy(), [-1.0, 0.0, 1.0], rtol=1e-6)
    values = tf.constant([-1000.0, -3.5, -1e-3, 0.0, 2e-2, 7.0, 1000.0])
    np.testing.assert_allclose(
        dists.symexp(dists.symlog(values)).numpy(), values.numpy(), rtol=1e-5
    )


def test_twohot_encode():
    bins = tf.constant([0.0, 1.0, 2.0, 3.0])
    got = dists.twohot_encode(tf.constant([1.25, -5.0, 3.0, 2.0, 9.0]), bins).numpy()
    np.testing.assert_allclose(
        got, [[0, 0.75, 0.25, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-6
    )


def test_symlog_twohot_decode_and_log_prob():
    # Logits equal to log of the two-hot target decode back to the target.
    dist = dists.SymlogTwoHot(tf.zeros((1, 255)))
    for y in (-37.0, 0.0, 0.4, 123.0):
        target = dists.twohot_encode(dists.symlog(tf.constant([y])), dist.bins)
        decoded = dists.SymlogTwoHot(tf.math.log(target + 1e-12)).mean()
        assert decoded.numpy()[0] == pytest.approx(y, rel=1e-4, abs=1e-4)
    # Uniform logits: log-likelihood of any in-range value is log(1/255).
    assert dist.log_prob(tf.constant([5.0])).numpy()[0] == pytest.approx(-math.log(255), rel=1e-5)
    # symexp(mean of uniform over symmetric bins) = 0.
    assert dist.mean().numpy()[0] == pytest.approx(0.0, abs=1e-5)


def test_straight_through_gradient():
    logits = tf.Variable([[0.3, -1.0, 2.0]])
    weights = tf.constant([[1.0, 2.0, 3.0]])
    with tf.GradientTape(persistent=True) as tape:
        dist = dists.OneHot(logits * 1)
        sample = dist.sample(tf.constant([1, 2]))
        st = tf.reduce_sum(sample * weights)
        soft = tf.reduce_sum(tf.nn.softmax(logits) * weights)
        mode = tf.reduce_sum(dist.mode() * weights)
    value = sample.numpy()
    # Exactly one-hot in value: onehot + (probs - sg(probs)) adds an exact zero.
    assert value.sum() == 1.0 and set(value.ravel()) <= {0.0, 1.0}
    np.testing.assert_allclose(
        tape.gradient(st, logits).numpy(), tape.gradient(soft, logits).numpy(), rtol=1e-6
    )
    # The mode has no gradient (the authors' tfd mode), and is the most likely class.
    assert tape.gradient(mode, logits) is None and mode.numpy() == 3.0
    # A NaN logit makes the mode NaN, not the one-hot of class 0.
    assert np.isnan(dists.OneHot(tf.constant([[0.0, np.nan, 1.0]])).mode().numpy()).all()


def test_unimix():
    logits = tf.constant([[100.0, 0.0, 0.0, 0.0]])
    probs = tf.exp(dists.unimix_logits(logits, 0.01)).numpy()
    np.testing.assert_allclose(probs, [[0.99 + 0.0025, 0.0025, 0.0025, 0.0025]], rtol=1e-5)
    np.testing.assert_allclose(dists.unimix_logits(logits, 0.0).numpy(), logits.numpy())


def test_tanh_normal_mode_hand_computed():
    # mean 0.5, std 1: the mode in x solves x = 0.5 + 2 tanh x, the zero of the derivative
    # of -(x - 0.5)^2 / 2 + 2 log cosh x: x = 2.4717, a = tanh x = 0.98584 (not tanh 0.5 = 0.46).
    mode = dists.Normal([[0.5, -0.5]], [[1.0, 1.0]], squash=True).mode().numpy()[0]
    np.testing.assert_allclose(mode, [0.98584, -0.98584], atol=2e-5)
    x = np.arctanh(np.float64(mode[0]))
    assert abs(x - (0.5 + 2 * np.tanh(x))) < 2e-3
    # A wide std puts the mode at the bound on the mean's side (V1's early bang-bang
    # evaluation); a narrow one at tanh(mean).
    wide = dists.Normal([[0.3, -0.3]], [[5.0, 5.0]], squash=True).mode().numpy()[0]
    np.testing.assert_array_equal(wide, [1.0, -1.0])
    narrow = dists.Normal([[0.5, -2.0]], [[1e-3, 1e-3]], squash=True).mode().numpy()[0]
    np.testing.assert_allclose(narrow, np.tanh([0.5, -2.0]), atol=1e-5)


def test_tanh_normal_mode_maximises_the_density():
    rng = np.random.default_rng(0)
    mean = rng.uniform(-5, 5, 120) * rng.choice([1.0, 1e-2, 1e-4], 120)
    std = np.exp(rng.uniform(np.log(1e-4), np.log(10.0), 120))
    mean, std = np.append(mean, 0.0), np.append(std, np.sqrt(0.5))
    got = dists.tanh_normal_mode(tf.constant(mean, tf.float32), tf.constant(std, tf.float32))
    want = []
    for m, s in zip(mean, std):
        x = np.linspace(m - 12 * s - 1, m + 12 * s + 1, 400_001)
        log_density = -((x - m) ** 2) / (2 * s * s) + 2 * np.logaddexp(x, -x)
        want.append(np.tanh(x[np.argmax(log_density)]))
    err = np.abs(got.numpy() - np.array(want))
    assert err[:-1].max() < 1e-4, err.max()
    # mean 0, std 1/sqrt(2): the density is flat to fourth order at 0; Newton converges linearly.
    assert err[-1] < 1e-3


def test_categorical_kl_hand_computed():
    p = np.array([0.5, 0.5])
    q = np.array([0.25, 0.75])
    expected = (p * np.log(p / q)).sum() * 2  # two identical groups
    got = dists.kl_categorical(
        tf.constant(np.log([[p, p]]), tf.float32), tf.constant(np.log([[q, q]]), tf.float32)
    )
    assert got.numpy()[0] == pytest.approx(expected, rel=1e-5)


def test_quantile_matches_numpy():
    x = np.random.default_rng(0).normal(size=(15, 7)).astype(np.float32)
    for q in (0.0, 0.05, 0.5, 0.95, 1.0):
        assert quantile(tf.constant(x), q).numpy() == pytest.approx(np.quantile(x, q), rel=1e-5)


def test_return_norm_ema_and_floor():
    norm = ReturnNorm(decay=0.99, limit=1.0, low=5.0, high=95.0)
    returns = tf.constant(np.linspace(0, 1000, 101), tf.float32)
    scale, stats = norm(returns)
    assert norm.low.numpy() == 0.0, 'the statistics are stored only by assign'
    norm.assign(stats)
    # EMA from 0: low = 0.01 * 50, high = 0.01 * 950 -> range 9.
    assert norm.low.numpy() == pytest.approx(0.5)
    assert norm.high.numpy() == pytest.approx(9.5)
    assert scale.numpy() == pytest.approx(9.0)
    # Small returns never shrink the scale below 1 (DreamerV3 eq. 12).
    assert ReturnNorm()(tf.constant([0.0, 0.01]))[0].numpy() == pytest.approx(1.0)


def test_adam_step_and_skip_nonfinite():
    var = tf.Variable([1.0, -2.0])
    opt = Adam([var], lr=0.1, eps=1e-8, clip=0.0)
    opt.apply([tf.constant([0.5, -4.0])])
    # First Adam step moves each weight by lr * sign(g) (bias-corrected m / sqrt(v)).
    np.testing.assert_allclose(var.numpy(), [0.9, -1.9], rtol=1e-5)
    metrics = opt.apply([tf.constant([np.nan, 1.0])])
    np.testing.assert_allclose(var.numpy(), [0.9, -1.9], rtol=1e-5)
    assert metrics['grad_finite'].numpy() == 0.0 and opt.skipped.numpy() == 1
    assert opt.step.numpy() == 1


def test_adam_epsilon_forms():
    # One step with g = 0.01, lr 1, eps 0.1: m = 1e-3, v = 1e-7, m_hat = 0.01, v_hat = 1e-4.
    # optax (DreamerV3): m_hat / (sqrt(v_hat) + eps) = 0.01 / 0.11.
    # keras (V1/V2): sqrt(1 - 0.999) / (1 - 0.9) * m / (sqrt(v) + eps)
    #   = 0.316228 * 1e-3 / (3.16228e-4 + 0.1) = 3.15234e-3.
    expected = {'optax': 0.01 / 0.11, 'keras': 3.15234e-3}
    for form, step in expected.items():
        var = tf.Variable([0.0])
        Adam([var], lr=1.0, eps=0.1, eps_form=form).apply([tf.constant([0.01])])
        np.testing.assert_allclose(var.numpy(), [-step], rtol=1e-4)
    with pytest.raises(ValueError, match='eps_form'):
        Adam([tf.Variable([0.0])], lr=1.0, eps_form='torch')


def test_adam_clip_and_loss_scale():
    var = tf.Variable([0.0, 0.0])
    opt = Adam([var], lr=1.0, clip=1.0, loss_scale=True)
    scale = opt.scale.numpy()
    metrics = opt.apply([tf.constant([3.0, 4.0]) * scale])
    assert metrics['grad_norm'].numpy() == pytest.approx(5.0)  # unscaled norm
    opt.apply([tf.constant([np.inf, 0.0])])
    assert opt.scale.numpy() == pytest.approx(scale / 2)  # halved after overflow


def test_weight_decay_on_every_variable_before_the_step():
    # danijar/dreamerv2 Optimizer: var <- (1 - wd) var on every variable (wd_pattern '.*'),
    # then Adam. With lr 0 only the decay shows.
    layer = nn.Linear(2, 2)
    layer.b.assign([1.0, 1.0])
    w_before = layer.w.numpy().copy()
    opt = Adam([layer.w, layer.b], lr=0.0, wd=0.5)
    opt.apply([tf.zeros_like(layer.w), tf.zeros_like(layer.b)])
    np.testing.assert_allclose(layer.w.numpy(), 0.5 * w_before, rtol=1e-6)
    np.testing.assert_allclose(layer.b.numpy(), [0.5, 0.5])


@pytest.mark.parametrize('preset, prior_grad', [
    # PlaNet (planet training/utility.py): each step's KL clipped at 3 nats, then the mean:
    # steps with KL 2.0 and 4.5 give mean(max(3, [2, 4.5])) per term; only step 2 has a gradient.
    ('planet', [[0.0, 0.0], [1.5, 0.0]]),
    # DreamerV1 (danijar/dreamer): the mean KL, 3.25, clipped at 3: both steps have a gradient.
    ('dreamerv1', [[1.0, 0.0], [1.5, 0.0]]),
])
def test_planet_clips_free_nats_per_step_and_dreamerv1_on_the_mean(preset, prior_grad):
    kl = load_config([preset]).kl
    rssm = gaussian_rssm()
    post = {'mean': tf.zeros((2, 2)), 'std': tf.ones((2, 2)), 'deter': tf.zeros((2, 2)),
            'stoch': tf.zeros((2, 2))}
    prior_mean = tf.Variable([[2.0, 0.0], [3.0, 0.0]])  # KL 2.0 and 4.5
    with tf.GradientTape() as tape:
        loss, metrics = kl_loss(post, dict(post, mean=prior_mean * 1), rssm, **dict(kl))
    assert metrics['kl'].numpy() == pytest.approx(3.25)
    expected = 2 * (3.75 if preset == 'planet' else 3.25)  # dyn and rep terms, weights 1
    assert loss.numpy() == pytest.approx(expected)
    np.testing.assert_allclose(tape.gradient(loss, prior_mean).numpy(), prior_grad, atol=1e-6)


def test_dreamerv3_discount_is_the_authors_one_minus_one_over_horizon_333():
    assert load_config(['dreamerv3']).imag.discount == 1 - 1 / 333
