"""Dreaming's contrastive objective (dreamer_tf/contrastive.py) and the DreamingV1/V2 presets."""

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import load_config
from dreamer_tf.contrastive import Contrastive, LinearDynamics, info_nce, random_crop
from dreamer_tf.diagnostics.benchmark import synthetic_batch
from dreamer_tf.envs.base import ActSpace, Space

SEED = tf.constant([3, 4])
IMAGE = {'image': Space((64, 64, 3), np.uint8)}


def test_info_nce_matches_hand_computed_value():
    queries = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    keys = tf.constant([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = tf.constant([0, 1])
    loss, correct = info_nce(queries, keys, labels, 'bilinear', 1.0)
    # Logits are q . k: row 0 [1, 0, 1], row 1 [0, 2, 1]; loss = logsumexp - own logit.
    e = np.e
    expected = [np.log(2 * e + 1) - 1, np.log(1 + e**2 + e) - 2]
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)
    # Row 0 ties its own key with key 2; argmax takes the first, its own.
    assert correct.numpy().tolist() == [True, True]

    # Cosine scores with temperature 0.5: key 1 normalises to [0, 1], key 2 to [1, 1] / sqrt 2.
    loss, _ = info_nce(queries, keys, labels, 'cosine', 0.5)
    c = 1 / np.sqrt(2)
    row0 = np.array([1.0, 0.0, c]) / 0.5
    row1 = np.array([0.0, 1.0, c]) / 0.5
    expected = [
        np.log(np.exp(row0).sum()) - row0[0],
        np.log(np.exp(row1).sum()) - row1[1],
    ]
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)


def test_info_nce_rejects_bad_score_and_temperature():
    q = tf.ones((1, 2))
    with pytest.raises(ValueError, match='score'):
        info_nce(q, q, tf.constant([0]), 'dot', 1.0)
    with pytest.raises(ValueError, match='temperature'):
        info_nce(q, q, tf.constant([0]), 'bilinear', 0.0)


def test_info_nce_falls_as_matching_pairs_align():
    rng = np.random.default_rng(0)
    keys = tf.constant(rng.normal(size=(16, 8)), tf.float32)
    noise = tf.constant(0.05 * rng.normal(size=(16, 8)), tf.float32)
    labels = tf.range(16)
    losses = []
    for align in (0.0, 0.5, 1.0):
        queries = (1 - align) * noise + align * keys
        losses.append(float(tf.reduce_mean(info_nce(queries, keys, labels)[0])))
    assert losses[0] > losses[1] > losses[2]
    # Unrelated queries score near chance, ln 16; aligned ones far below it.
    assert abs(losses[0] - np.log(16)) < 0.1 and losses[2] < 0.25 * losses[0]


@pytest.mark.parametrize('score,temperature', [('bilinear', 1.0), ('cosine', 0.1)])
def test_contrastive_training_aligns_states_with_their_observations(score, temperature):
    # States that follow linear dynamics, s_t = s_{t-1} A + a_{t-1} B, and embeddings that
    # are a linear image of them: training W and the linear dynamics must bring every
    # InfoNCE term, 0 to 2 steps ahead, far below its start. Seeded: the module's
    # initial weights otherwise vary from run to run (the accuracy bound failed once).
    tf.random.set_seed(1)
    rng = np.random.default_rng(1)
    batch, length, feat_size, embed_size, act_dim = 4, 10, 6, 8, 2
    rotation = np.linalg.qr(rng.normal(size=(feat_size, feat_size)))[0]
    control = rng.normal(size=(act_dim, feat_size))
    action = rng.uniform(-1, 1, (batch, length, act_dim))
    feat = np.zeros((batch, length, feat_size))
    feat[:, 0] = rng.normal(size=(batch, feat_size))
    for t in range(1, length):
        feat[:, t] = feat[:, t - 1] @ rotation + action[:, t] @ control
    embed = feat @ rng.normal(size=(feat_size, embed_size))
    is_first = tf.constant(np.eye(length, dtype=bool)[[0] * batch])
    feat, embed, action = (tf.constant(x, tf.float32) for x in (feat, embed, action))
    module = Contrastive(
        feat_size,
        embed_size,
        act_dim,
        score=score,
        temperature=temperature,
        overshoot=2,
        crop_pad=0,
    )
    opt = tf.keras.optimizers.Adam(0.05)
    first, _ = module.loss(feat, embed, action, is_first)
    assert set(first) == {'contrast_0', 'contrast_1', 'contrast_2'}
    opt.build(module.trainable_variables)

    @tf.function
    def train():
        with tf.GradientTape() as tape:
            losses, metrics = module.loss(feat, embed, action, is_first)
            total = sum(losses.values())
        grads = tape.gradient(total, module.trainable_variables)
        opt.apply_gradients(zip(grads, module.trainable_variables))
        return losses, metrics

    for _ in range(150):
        losses, metrics = train()
    for key, loss in losses.items():
        assert float(loss) < 0.25 * float(first[key]), key
    if score == 'cosine':
        # Unit-norm scores can rank every pair right; raw dot products favour long keys.
        assert all(float(metrics[f'contrast_{k}_acc']) > 0.9 for k in range(3))


def test_random_crop_keeps_shape_and_shifts_each_sequence():
    rng = np.random.default_rng(2)
    batch, length, size, pad = 8, 3, 12, 2
    images = rng.integers(0, 255, (batch, length, size, size, 3), np.uint8)
    out = random_crop(tf.constant(images), pad, SEED).numpy()
    assert out.shape == images.shape and out.dtype == np.uint8
    padded = np.pad(images, [(0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)], mode='edge')
    shifts = []
    for b in range(batch):
        # Each sequence is one window of the border-replicated image, the same at every step.
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(out[b], padded[b, :, dy : dy + size, dx : dx + size])
        ]
        assert matches, f'sequence {b} is not a shifted window of its images'
        shifts.append(matches[0])
    assert len(set(shifts)) > 1, 'every sequence got the same shift'
    np.testing.assert_array_equal(random_crop(tf.constant(images), 0, SEED).numpy(), images)
    with pytest.raises(ValueError, match='padding'):
        random_crop(tf.constant(images), -1, SEED)


def test_linear_overshooting_shapes_values_and_episode_masks():
    rng = np.random.default_rng(3)
    batch, length, size, act_dim, steps = 2, 6, 4, 3, 3
    dynamics = LinearDynamics(size, act_dim)
    states = tf.constant(rng.normal(size=(batch, length, size)), tf.float32)
    actions = tf.constant(rng.normal(size=(batch, length, act_dim)), tf.float32)
    is_first = np.zeros((batch, length), bool)
    is_first[:, 0] = True
    is_first[1, 3] = True
    rollouts = dynamics.rollout(states, actions, tf.constant(is_first), steps)
    assert len(rollouts) == steps + 1
    for k, (pred, valid) in enumerate(rollouts):
        assert pred.shape == (batch, length - k, size)
        assert valid.shape == (batch, length - k)
    # Two steps from t = 1: s^_3 = f(f(s_1, a_1 -> stored at 2), stored at 3).
    manual = dynamics(dynamics(states[:, 1], actions[:, 2]), actions[:, 3])
    np.testing.assert_allclose(rollouts[2][0][:, 1].numpy(), manual.numpy(), rtol=1e-5)
    # Sequence 1 starts an episode at 3: windows (t, t + k] holding it are masked out.
    valid = rollouts[2][1].numpy()
    assert valid[0].all()
    assert valid[1].tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match='longer than 3'):
        dynamics.rollout(states[:, :3], actions[:, :3], tf.constant(is_first[:, :3]), steps)


@pytest.mark.parametrize('preset', ['dreamingv1', 'dreamingv2'])
def test_dreaming_builds_no_decoder(preset):
    agent = Agent(IMAGE, ActSpace(False, 2), load_config([preset, 'dmc_vision', 'debug']))
    assert isinstance(agent.wm.representation, Contrastive)
    assert not agent.wm.representation.decodes
    names = [v.name for v in agent.variables]
    assert not [n for n in names if 'decoder' in n]
    assert [n for n in names if 'contrastive' in n]
    # The contrastive weights are trained by the world model's optimiser.
    model_vars = {id(v) for v in agent.model_opt.params}
    assert all(id(v) in model_vars for v in agent.wm.representation.trainable_variables)


def first_step(obs_space):
    """The policy's input for two envs: the first step of two synthetic sequences."""
    batch = synthetic_batch(obs_space, ActSpace(False, 2), 2, 8)
    return {k: batch[k][:, 0] for k in (*obs_space, 'is_first')}


PRESETS = [
    ('dreamingv1', 'dmc_vision', IMAGE),
    ('dreamingv2', 'dmc_vision', IMAGE),
    ('dreamingv1', 'dmc_proprio', {'vector': Space((5,), np.float32)}),
]


@pytest.mark.parametrize('preset,suite,obs_space', PRESETS)
def test_dreaming_preset_two_updates(preset, suite, obs_space):
    config = load_config([preset, suite, 'debug'])
    assert config.representation == 'contrastive' and config.contrastive.overshoot == 3
    act_space = ActSpace(False, 2)
    agent = Agent(obs_space, act_space, config)
    before = [v.numpy().copy() for v in agent.wm.trainable_variables]
    for seed in range(2):
        metrics = agent.train(synthetic_batch(obs_space, act_space, 2, 8, seed=seed))
    keys = [f'contrast_{k}_loss' for k in range(4)] + ['reward_loss', 'kl', 'actor_loss']
    for key in keys:
        assert np.isfinite(metrics[key].numpy()), key
    assert not any(k.startswith('recon') for k in metrics)
    # Without a decoder the encoder learns from the contrastive, reward and KL terms alone.
    trained = {
        v.name
        for a, v in zip(before, agent.wm.trainable_variables)
        if not np.allclose(a, v.numpy())
    }
    for module in (agent.wm.encoder, agent.wm.representation, agent.wm.reward):
        assert {v.name for v in module.trainable_variables} <= trained, module.name
    for explore in (True, False):
        action, _ = agent.policy(first_step(obs_space), agent.initial_state(2), explore=explore)
        assert action.shape == (2, 2) and np.all(np.abs(action.numpy()) <= 1.0)


def test_dreaming_acts_on_the_unshifted_image():
    # Augmentation belongs to training: the same observation gives the same deterministic action.
    agent = Agent(IMAGE, ActSpace(False, 2), load_config(['dreamingv1', 'dmc_vision', 'debug']))
    obs = first_step(IMAGE)
    first, _ = agent.policy(obs, agent.initial_state(2), explore=False)
    second, _ = agent.policy(obs, agent.initial_state(2), explore=False)
    np.testing.assert_array_equal(first.numpy(), second.numpy())


def test_bad_representation_and_contrastive_settings_are_named():
    with pytest.raises(ValueError, match='representation'):
        Agent(IMAGE, ActSpace(False, 2), load_config(['debug'], {'representation': 'decoder'}))
    with pytest.raises(ValueError, match='crop_pad'):
        Agent(IMAGE, ActSpace(False, 2),
              load_config(['dreamingv1', 'debug'], {'contrastive.crop_pad': -2}))


# The training loop end to end on rendered dm_control with the tiny `debug` networks:
# train, checkpoint, resume with a larger budget, restore and evaluate.
@pytest.mark.slow
@pytest.mark.parametrize('preset', ['dreamingv1', 'dreamingv2', 'planet'])
def test_preset_trains_resumes_and_evaluates_on_dmc_vision(tmp_path, preset):
    from dreamer_tf.run.collect import evaluate
    from dreamer_tf.run.loop import train
    from dreamer_tf.run.restore import load_run

    blocks = [preset, 'dmc_vision', 'debug']
    overrides = {
        'task': 'dmc_cartpole_balance',
        'logdir': str(tmp_path),
        'env.time_limit': 100,
        'run.steps': 300,
        'run.prefill': 100,
        'run.train_ratio': 0.0,
        'run.train_every': 10,
        'run.train_steps': 1,
        'run.pretrain': 0,
        'run.eval_every': 200,
        'run.log_every': 100,
    }
    _, counters = train(load_config(blocks, overrides))
    assert counters.env_steps.numpy() >= 300 and counters.updates.numpy() > 0
    _, resumed = train(load_config(blocks, {**overrides, 'run.steps': 400}))
    assert resumed.env_steps.numpy() >= 400 and resumed.updates.numpy() > counters.updates.numpy()
    agent, _, envs, path = load_run(tmp_path, envs=2)
    try:
        results = evaluate(agent, envs, 2)
    finally:
        envs.close()
    assert path.endswith('ckpt-2') and [r['length'] for r in results] == [100, 100]


@pytest.mark.parametrize('suite', ['dmc_vision', 'dmc_proprio', 'atari', 'minatar'])
@pytest.mark.parametrize(
    'dreaming,dreamer', [('dreamingv1', 'dreamerv1'), ('dreamingv2', 'dreamerv2')]
)
def test_dreaming_differs_from_its_dreamer_only_in_the_representation(suite, dreaming, dreamer):
    # Every setting, suite-specific blocks included, comes from the Dreamer preset, so a
    # comparison of the two isolates the contrastive objective.
    ours = load_config([dreaming, suite]).flat()
    theirs = load_config([dreamer, suite]).flat()
    differ = {key for key in ours if ours[key] != theirs[key]}
    assert differ == {'algo', 'representation'}
