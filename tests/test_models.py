"""Shapes of the RSSM and networks, and two updates of every preset at the debug size."""

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf import nn
from dreamer_tf.agent import Agent
from dreamer_tf.behavior import lambda_return
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.diagnostics.value_trace import imagined_return
from dreamer_tf.envs.base import ActSpace, Space
from dreamer_tf.heads import Decoder, Encoder
from dreamer_tf.rssm import RSSM

SEED = tf.constant([1, 2])


@pytest.mark.parametrize('classes', [0, 4])
def test_observe_and_imagine_shapes(classes):
    rssm = RSSM(3, 7, deter=8, hidden=8, stoch=5, classes=classes, initial='learned')
    stoch = 5 * classes if classes else 5
    embed = tf.random.normal((2, 6, 7))
    action = tf.random.normal((2, 6, 3))
    is_first = tf.constant([[True] + [False] * 5] * 2)
    post, prior = rssm.observe(embed, action, is_first, SEED)
    assert post['deter'].shape == prior['deter'].shape == (2, 6, 8)
    assert post['stoch'].shape == (2, 6, stoch)
    assert sorted(prior) == sorted(set(post) - {'stoch'})
    assert rssm.feat(post).shape == (2, 6, 8 + stoch)
    start = {k: tf.reshape(v, [-1, *v.shape[2:]]) for k, v in post.items()}
    policy = lambda feat, seed: (tf.tanh(feat[:, :3]), feat[:, :2])
    states, actions, aux = rssm.imagine(policy, start, 4, SEED, aux_size=2)
    assert states['deter'].shape == (5, 12, 8)
    assert states['stoch'].shape == (5, 12, stoch)
    assert actions.shape == (4, 12, 3)
    # aux[t] is what the policy returned alongside actions[t], in states[t].
    np.testing.assert_allclose(aux.numpy(), rssm.feat(states)[:-1, :, :2].numpy(), atol=1e-6)
    np.testing.assert_allclose(actions.numpy(), np.tanh(rssm.feat(states)[:-1, :, :3]), atol=1e-6)
    np.testing.assert_allclose(states['deter'][0].numpy(), start['deter'].numpy())


def test_imagined_actions_are_scaled_into_unit_box():
    rssm = RSSM(2, 3, deter=6, hidden=6, stoch=2, classes=3)
    state = rssm.initial(1)
    # Each component is scaled by 1 / max(1, |a_i|): [3, -0.5] acts as [1, -0.5].
    big = rssm.img_step(state, tf.constant([[3.0, -0.5]]), SEED)
    unit = rssm.img_step(state, tf.constant([[1.0, -0.5]]), SEED)
    np.testing.assert_allclose(big['deter'].numpy(), unit['deter'].numpy(), atol=1e-6)
    action = tf.Variable([[3.0, 0.5]])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(rssm.img_step(state, action, SEED)['deter'])
    assert np.all(np.isfinite(tape.gradient(out, action).numpy()))


@pytest.mark.parametrize('classes', [0, 4])
def test_observe_is_obs_step_repeated_with_the_prior_of_each_step(classes):
    """observe() hoists work out of its scan (the embedding's matmul, the prior): it
    must still be obs_step at every step, and its prior img_step's parameters."""
    rssm = RSSM(3, 7, deter=8, hidden=8, stoch=5, classes=classes, initial='learned')
    embed = tf.random.normal((2, 5, 7))
    action = tf.random.normal((2, 5, 3))
    is_first = tf.constant([[True, False, False, True, False]] * 2)
    post, prior = rssm.observe(embed, action, is_first, SEED)
    init = rssm.initial(2)
    state = init
    seeds = tf.random.experimental.stateless_split(SEED, 5)
    for t in range(5):
        prev = state
        state = rssm.obs_step(prev, action[:, t], embed[:, t], is_first[:, t], seeds[t])
        reset = {k: tf.where(is_first[0, t], init[k], v) for k, v in prev.items()}
        stepped = rssm.img_step(reset, action[:, t] * (0.0 if is_first[0, t] else 1.0), seeds[t])
        for key, value in state.items():
            np.testing.assert_allclose(post[key][:, t], value, atol=1e-5, err_msg=key)
        for key, value in prior.items():
            np.testing.assert_allclose(value[:, t], stepped[key], atol=1e-5, err_msg=key)


@pytest.mark.parametrize('shape', [(5, 8), (2, 3, 4, 8)])
def test_layer_norm_has_the_gradient_of_its_formula(shape):
    x = tf.random.normal(shape, seed=1) * 3.0 + 1.0
    scale, offset = tf.random.normal((8,), seed=2), tf.random.normal((8,), seed=3)
    dy = tf.random.normal(shape, seed=4)

    def formula(x, scale, offset):
        mean, var = tf.nn.moments(x, [-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-3) * scale + offset

    outs = []
    for fn in (formula, lambda *args: nn.layer_norm(*args, 1e-3)):
        with tf.GradientTape() as tape:
            tape.watch([x, scale, offset])
            y = fn(x, scale, offset)
        outs.append([y, *tape.gradient(y, [x, scale, offset], output_gradients=dy)])
    for expected, got in zip(*outs):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_is_first_resets_state():
    rssm = RSSM(2, 3, deter=6, hidden=6, stoch=2, classes=3)
    embed = tf.random.normal((1, 3))
    other = {k: v + 5.0 for k, v in rssm.initial(1).items()}
    reset_post = rssm.obs_step(other, tf.ones((1, 2)), embed, tf.constant([True]), SEED)
    fresh_post = rssm.obs_step(
        rssm.initial(1), tf.zeros((1, 2)), embed, tf.constant([False]), SEED
    )
    np.testing.assert_allclose(reset_post['deter'].numpy(), fresh_post['deter'].numpy(), atol=1e-6)
    kept_post = rssm.obs_step(other, tf.ones((1, 2)), embed, tf.constant([False]), SEED)
    assert not np.allclose(kept_post['deter'].numpy(), fresh_post['deter'].numpy())


@pytest.mark.parametrize('padding', ['same', 'valid'])
def test_encoder_decoder_images_and_vectors(padding):
    space = {'image': Space((64, 64, 3), np.uint8), 'vector': Space((5,), np.float32)}
    kw = dict(
        cnn_keys='.*',
        mlp_keys='.*',
        mlp_layers=1,
        mlp_units=8,
        cnn_depth=2,
        cnn_padding=padding,
        act='silu',
        norm='layer',
    )
    enc = Encoder(space, symlog=True, **kw)
    obs = {'image': tf.zeros((2, 3, 64, 64, 3), tf.uint8), 'vector': tf.ones((2, 3, 5))}
    embed = enc(obs)
    assert embed.shape == (2, 3, enc.out_size)
    dec = Decoder(space, 10, vector_dist='symlog_mse', image_dist='mse', **kw)
    out = dec(tf.zeros((2, 3, 10)))
    assert out['image'].mode().shape == (2, 3, 64, 64, 3)
    assert out['vector'].mode().shape == (2, 3, 5)
    targets = dec.targets(obs)
    assert out['image'].log_prob(targets['image']).shape == (2, 3)


def test_transposed_convolution_of_a_1x1_input_is_the_conv_op():
    # ConvTranspose2D computes a 1x1 input (the V1/V2 decoder's first layer) as one matmul;
    # output and gradients must be tf.nn.conv2d_transpose's.
    layer = nn.ConvTranspose2D(6, 4, 5, stride=2, padding='valid')
    layer.b.assign(tf.random.normal((4,)))
    x = tf.Variable(tf.random.normal((3, 1, 1, 6)))
    weight = tf.random.normal((3, 5, 5, 4))
    with tf.GradientTape(persistent=True) as tape:
        fast = layer(x)
        conv = tf.nn.conv2d_transpose(x, layer.w, [3, 5, 5, 4], 2, 'VALID') + layer.b
        fast_sum, conv_sum = tf.reduce_sum(fast * weight), tf.reduce_sum(conv * weight)
    np.testing.assert_allclose(fast.numpy(), conv.numpy(), atol=1e-5)
    for var in (x, layer.w, layer.b):
        np.testing.assert_allclose(
            tape.gradient(fast_sum, var).numpy(), tape.gradient(conv_sum, var).numpy(), atol=1e-4
        )
    # Output pixel (i, j) of channel c is sum_m x[m] w[i, j, c, m]: one tap, no flip.
    np.testing.assert_allclose(
        fast[1, 2, 3, 0].numpy(),
        np.dot(x[1, 0, 0].numpy(), layer.w[2, 3, 0].numpy()) + layer.b[0].numpy(),
        rtol=1e-5,
    )


def test_unsupported_observation_shape_is_named():
    with pytest.raises(ValueError, match="'grid' has shape"):
        Encoder(
            {'grid': Space((4, 4), np.float32)},
            cnn_keys='.*',
            mlp_keys='.*',
            mlp_layers=1,
            mlp_units=4,
            cnn_depth=2,
            cnn_padding='same',
            act='silu',
            norm='none',
            symlog=False,
        )


CASES = [
    # preset, suite, observation space, discrete actions
    ('dreamerv1', 'dmc_vision', {'image': Space((64, 64, 3), np.uint8)}, False),
    ('dreamerv2', 'gym', {'vector': Space((4,), np.float32)}, True),
    ('dreamerv2', 'dmc_proprio', {'vector': Space((5,), np.float32)}, False),
    (
        'dreamerv3',
        'gym',
        {'image': Space((64, 64, 3), np.uint8), 'vector': Space((3,), np.float32)},
        False,
    ),
    ('dreamerv3', 'gym', {'vector': Space((4,), np.float32)}, True),
]


@pytest.mark.parametrize('preset,suite,obs_space,discrete', CASES)
def test_preset_two_updates(preset, suite, obs_space, discrete):
    config = load_config([preset, suite, 'debug'])
    act_space = ActSpace(discrete, 2 if discrete else 3)
    agent = Agent(obs_space, act_space, config)
    before = [v.numpy().copy() for v in agent.wm.trainable_variables]
    actor_before = [v.numpy().copy() for v in agent.behavior.actor.trainable_variables]
    for seed in range(2):
        metrics = agent.train(synthetic_batch(obs_space, act_space, 2, 8, seed=seed))
    for key in ('model_loss', 'actor_loss', 'critic_loss', 'kl'):
        assert np.isfinite(metrics[key].numpy()), key
    assert agent.model_opt.step.numpy() == 2 and agent.behavior.actor_opt.step.numpy() == 2
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, agent.wm.trainable_variables))
    assert any(
        not np.allclose(a, b.numpy())
        for a, b in zip(actor_before, agent.behavior.actor.trainable_variables)
    )
    # The policy acts for a batch of environments and returns valid actions.
    obs = {
        k: v[:, 0]
        for k, v in synthetic_batch(obs_space, act_space, 2, 8).items()
        if k in obs_space or k == 'is_first'
    }
    for explore in (True, False):
        action, state = agent.policy(obs, agent.initial_state(2), explore=explore)
        assert action.shape == (2, act_space.n)
        if discrete:
            np.testing.assert_allclose(action.numpy().sum(-1), 1.0, rtol=1e-6)
        else:
            assert np.all(np.abs(action.numpy()) <= 1.0)


@pytest.mark.parametrize('preset', ['dreamerv3', 'dreamerv2'])
def test_imagined_return_is_the_lambda_one_return_of_the_imagination(preset):
    """The trace's long rollouts keep only running sums. One rollout of H steps must
    equal the lambda = 1 return of the training imagination over H steps from the
    same seed (V2: with its continue head's mean as discount; V3: its mode)."""
    config = load_config([preset, 'debug'], {'imag.horizon': 6})
    agent = Agent({'vector': Space((4,), np.float32)}, ActSpace(False, 2), config)
    rng = np.random.default_rng(0)
    # V3 zero-initialises the reward and critic outputs, which would make every return 0.
    for var in agent.wm.reward.variables + agent.behavior.critic.variables:
        var.assign(rng.normal(0.0, 0.5, var.shape).astype(np.float32))
    rssm = agent.wm.rssm
    start = rssm.img_step(
        rssm.initial(5), tf.constant(rng.uniform(-1, 1, (5, 2)), tf.float32), SEED
    )
    start = {'deter': start['deter'], 'stoch': start['stoch']}
    traj = agent.behavior.imagine(agent.wm, start, tf.ones([5]), SEED)
    value = agent.behavior.critic(traj['feat']).mean()
    expected = lambda_return(traj['reward'], value, traj['discount'], 1.0)[0].numpy()
    assert np.ptp(expected) > 0.1
    got = imagined_return(agent, start, np.ones(5), 6, 1, SEED)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Several rollouts are averaged; a terminal start is worth nothing.
    got = imagined_return(agent, start, np.array([1, 1, 0, 1, 1]), 6, 3, SEED)
    assert got.shape == (5,) and got[2] == 0 and np.all(np.delete(got, 2) != 0)


def test_sampled_evaluation_policy_leaves_out_the_exploration_noise():
    """`noise=False` samples the actor without DreamerV1's additive exploration noise,
    which at amount 100 clips nearly every action to a bound (the untrained tanh
    actor alone reaches float32's 1.0 on about 15% of these inputs)."""
    config = load_config(['dreamerv1', 'debug'], {'run.expl_noise': 100.0})
    obs_space, act_space = {'vector': Space((4,), np.float32)}, ActSpace(False, 3)
    agent = Agent(obs_space, act_space, config)
    obs = {'vector': np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32),
           'is_first': np.ones(64, bool)}
    at_bound = {}
    for noise in (True, False):
        action, _ = agent.policy(obs, agent.initial_state(64), explore=True, noise=noise)
        at_bound[noise] = np.mean(np.abs(action.numpy()) == 1.0)
    assert at_bound[True] > 0.9 and at_bound[False] < 0.5, at_bound


def test_keras_free_variables_are_tracked():
    # Guard against the Keras-3-in-tf.Module trap : every weight is tracked.
    config = load_config(['dreamerv3', 'debug'])
    agent = Agent({'vector': Space((4,), np.float32)}, ActSpace(True, 2), config)
    tracked = {id(v) for v in agent.wm.trainable_variables}
    for module in (agent.wm.rssm.gru, agent.wm.reward, agent.wm.encoder,
                   agent.wm.representation.decoder):
        assert module.trainable_variables
        assert {id(v) for v in module.trainable_variables} <= tracked
    assert len(agent.behavior.actor.trainable_variables) >= 4


def test_xla_compiles_update_and_matches_policy():
    # The GPU default compiles with XLA. Random draws differ between XLA and TF's
    # kernels (even for one stateless algorithm), so the sampled update agrees only
    # statistically; the deterministic policy step must agree exactly.
    obs_space, act_space = {'vector': Space((4,), np.float32)}, ActSpace(False, 2)
    batch = synthetic_batch(obs_space, act_space, 2, 8)
    obs = {'vector': batch['vector'][:, 0], 'is_first': batch['is_first'][:, 0]}
    results, actions = {}, {}
    for jit in ('off', 'on'):
        tf.random.set_seed(0)
        agent = Agent(obs_space, act_space, load_config(['dreamerv3', 'debug'], {'jit': jit}))
        assert agent.jit == (jit == 'on')
        actions[jit], _ = agent.policy(obs, agent.initial_state(2), explore=False)
        results[jit] = {k: v.numpy() for k, v in agent.train(batch).items()}
    np.testing.assert_allclose(actions['on'].numpy(), actions['off'].numpy(), atol=1e-5)
    for key in ('model_loss', 'recon_vector_loss', 'critic_loss'):
        np.testing.assert_allclose(results['on'][key], results['off'][key], rtol=0.1, err_msg=key)
    assert all(np.isfinite(v).all() for v in results['on'].values())


def test_low_precision_updates_match_float32():
    # bf16 keeps 8 mantissa bits (relative rounding ~0.4% per op), float16 10;
    # over a whole update the losses and gradient norms agree with float32 to 5%,
    # and stay finite. Weights, distributions and losses are float32 in all three,
    # only the layers' matmuls, convolutions and activations run in low precision.
    # float16's gradients pass through the dynamic loss scale (2^15 here) and
    # back: its gradient norms pin that the scale reaches the tape. A step that
    # overflows float16 is skipped (weights unchanged) and the scale halves, so
    # float16 repeats the update, on the same seed, until it is finite.
    obs_space = {'image': Space((16, 16, 3), np.uint8), 'vector': Space((4,), np.float32)}
    act_space = ActSpace(False, 3)
    batch = synthetic_batch(obs_space, act_space, 4, 16)
    seed = tf.constant([1, 2], tf.int64)
    results = {}
    for precision in ('32', 'bf16', '16'):
        tf.random.set_seed(0)
        config = load_config(['dreamerv3', 'debug'], {'precision': precision, 'jit': 'off'})
        agent = Agent(obs_space, act_space, config)
        for _ in range(8):  # float16 here: finite at a scale of 2^10, after 5 halvings
            metrics = {k: float(v) for k, v in agent.update(batch, seed).items()}
            if metrics['model_grad_finite'] and metrics['critic_grad_finite']:
                break
        results[precision] = metrics
    assert results['16']['model_loss_scale'] < 2.0**15
    for precision in ('bf16', '16'):
        for key in ('model_loss', 'recon_image_loss', 'recon_vector_loss', 'reward_loss',
                    'cont_loss', 'kl', 'critic_loss', 'actor_loss', 'model_grad_norm',
                    'critic_grad_norm', 'actor_grad_norm'):
            assert np.isfinite(results[precision][key]), (precision, key)
            np.testing.assert_allclose(
                results[precision][key], results['32'][key], rtol=5e-2, atol=1e-4,
                err_msg=f'{precision} {key}',
            )


def test_reward_transform_is_the_reward_heads_target():
    # DreamerV2's Atari `clip_rewards: tanh`: training on raw rewards with the tanh
    # transform equals training on tanh-transformed rewards without it.
    obs_space, act_space = {'vector': Space((4,), np.float32)}, ActSpace(True, 2)
    batch = dict(synthetic_batch(obs_space, act_space, 2, 8))
    batch['reward'] = 5.0 * batch['reward']
    squashed = dict(batch, reward=tf.tanh(batch['reward']))
    losses = {}
    for transform, data in (('tanh', batch), ('identity', squashed), ('raw', batch)):
        tf.random.set_seed(0)
        name = 'identity' if transform == 'raw' else transform
        config = load_config(['dreamerv2', 'debug'], {'reward_transform': name})
        wm = Agent(obs_space, act_space, config).wm
        losses[transform] = float(wm.loss(data, SEED)[2]['reward_loss'])
    assert losses['tanh'] == pytest.approx(losses['identity'], rel=1e-6)
    assert abs(losses['raw'] - losses['tanh']) > 1e-3
    with pytest.raises(ValueError, match='reward_transform'):
        Agent(obs_space, act_space, load_config(['dreamerv2', 'debug'], {'reward_transform': 'x'}))


@pytest.mark.parametrize(
    'preset, dead', [('dreamerv1', 0.0), ('dreamerv2', 0.5), ('dreamerv3', 0.5)]
)
def test_actor_saturation_counts_modes_stuck_at_the_bound(preset, dead):
    """A pre-tanh mean of -20 puts V2's and V3's mode at exactly -1.0 in float32,
    where tanh's gradient is 0 (`actor_dead`); V1's 5 tanh(mu / 5) keeps its
    squashed mean off, though its mode is at the bound while its std is large."""
    from dreamer_tf.behavior import Actor

    cfg = load_config([preset, 'debug']).actor
    actor = Actor(4, ActSpace(False, 2), cfg)
    raw = tf.constant([[-20.0, 0.0, 0.0, 0.0]])  # means (-20, 0), raw stds 0

    def squashed_mean(raw):
        dist = actor.dist_from(raw)
        return tf.tanh(dist.loc) if preset == 'dreamerv1' else dist.mode()

    stats = actor.saturation(actor.dist_from(raw))
    assert float(stats['actor_dead']) == dead
    mean = squashed_mean(raw).numpy()[0]
    assert mean[1] == 0.0
    np.testing.assert_allclose(float(stats['actor_mode_abs']), abs(mean[0]) / 2, rtol=1e-6)
    # Raw stds of 0: V1 softplus(softplus^-1(5)) + 1e-4, V2 2 sigmoid(0) + 0.1,
    # V3 0.9 sigmoid(2) + 0.1.
    std = {'dreamerv1': 5.0001, 'dreamerv2': 1.1, 'dreamerv3': 0.9 / (1 + np.exp(-2.0)) + 0.1}
    np.testing.assert_allclose(float(stats['actor_std']), std[preset], rtol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(raw)
        out = tf.reduce_sum(squashed_mean(raw)[:, 0])
    assert (float(tape.gradient(out, raw)[0, 0]) == 0.0) == bool(dead)
    if preset == 'dreamerv1':  # std 5 (the preset's init_std): the density peaks at the bounds
        np.testing.assert_array_equal(actor.dist_from(raw).mode().numpy()[0], [-1.0, 1.0])


def test_dreamerv1_actor_is_dead_where_its_inner_tanh_saturates():
    # 5 tanh(mu / 5) is exactly -5 in float32 at mu = -100: no gradient reaches mu.
    from dreamer_tf.behavior import Actor

    actor = Actor(4, ActSpace(False, 2), load_config(['dreamerv1', 'debug']).actor)
    raw = tf.constant([[-100.0, 0.0, 0.0, 0.0]])
    assert float(actor.saturation(actor.dist_from(raw))['actor_dead']) == 0.5
    with tf.GradientTape() as tape:
        tape.watch(raw)
        loc = tf.reduce_sum(actor.dist_from(raw).loc[:, 0])
    assert float(tape.gradient(loc, raw)[0, 0]) == 0.0


@pytest.mark.parametrize('preset', ['dreamerv1', 'dreamerv2'])
def test_sample_latent_evaluation_draws_the_posterior_and_acts_on_the_actor_mode(preset):
    # run.eval_policy sample_latent: the V1/V2/PlaNet code's evaluation.
    agent = Agent({'vector': Space((4,), np.float32)}, ActSpace(False, 2),
                  load_config([preset, 'debug'], {'jit': 'off'}))
    obs = {'vector': np.ones((2, 4), np.float32), 'is_first': np.ones(2, bool)}
    first = lambda **kw: agent.policy(obs, agent.initial_state(2), explore=False, **kw)
    (_, (mode_a, _)), (_, (mode_b, _)) = first(), first()
    np.testing.assert_array_equal(mode_a['stoch'].numpy(), mode_b['stoch'].numpy())
    (action, (drawn_a, _)), (_, (drawn_b, _)) = first(sample_latent=True), first(sample_latent=True)
    assert not np.allclose(drawn_a['stoch'].numpy(), drawn_b['stoch'].numpy())
    actor_mode = agent.behavior.actor(agent.wm.rssm.feat(drawn_a)).mode()
    np.testing.assert_allclose(action.numpy(), np.clip(actor_mode.numpy(), -1, 1), atol=1e-6)
