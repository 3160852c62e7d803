"""World model: encoder + RSSM + decoder, reward and continuation heads, and its loss.

Loss (one form covering the papers):
    L = sum_k scale_k * E[-ln p(x_k | s_t)]            reconstruction, reward, continuation
        + dyn * clip(KL[sg(q) || p]) + rep * clip(KL[q || sg(p)])
`representation` selects the component by which the state learns about observations
(one interface, see Reconstruction):
- `reconstruction` (PlaNet, DreamerV1-V3): an observation decoder, -ln p(o_t | s_t);
- `contrastive` (DreamingV1/V2): no decoder at all; its term is replaced by
    Dreaming's InfoNCE terms `contrast_k`, k = 0..K steps ahead, on randomly
    cropped images (dreamer_tf/contrastive.py derives them from the ELBO).
PlaNet's 5-bit images (`image_bits`; google-research/planet
`tools/preprocess.py`, `image_bits` 5 in `scripts/configs.py`): pixels are
quantised to 2^bits levels and uniform noise of one level is added,
x = (floor(o / 2^(8 - bits)) + u) / 2^bits - 0.5 with u ~ U(0, 1), for the
encoder's input and the decoder's target alike, in training and when acting (the
model then always sees the input distribution it was trained on). At 8 bits
images pass through untouched.
The two KL terms are:
- DreamerV3 (eq. 5): dyn 0.5, rep 0.1, free bits 1 clipped per step
    (`free_avg: false`): max(1, KL) for each (batch, time) element.
- DreamerV2 KL balancing (eq. 2 / alg. 2): dyn = alpha = 0.8, rep = 1 - alpha,
    with free nats applied to the batch-mean KL (`free_avg: true`,
    danijar/dreamerv2 `kl.free_avg`).
- DreamerV1/PlaNet (eq. 10 / free nats): plain KL[q || p] with free nats 3
    on the mean. Its gradient is the sum of the two terms' (the prior's from
    the first, the posterior's from the second), so dyn = rep = 1 with
    `free_avg: true` reproduces it; the loss then counts the KL's value twice.
    (dyn = rep = 0.5, DreamerV2's alpha = 0.5, gives half of that gradient.)
"""

import tensorflow as tf

from dreamer_tf import distribute, heads
from dreamer_tf.contrastive import Contrastive
from dreamer_tf.rssm import RSSM

# Fold-in constant deriving the augmentation seed from the update's seed, so the
# RSSM's draws stay those of presets without augmentation.
AUGMENT_STREAM = 1

sg = tf.stop_gradient


def kl_loss(post, prior, rssm, *, dyn, rep, free, free_avg):
    """Balanced, free-bits KL objective (see module docstring). Returns (loss, metrics)."""
    dyn_kl = rssm.kl({k: sg(v) for k, v in post.items()}, prior)
    rep_kl = rssm.kl(post, {k: sg(v) for k, v in prior.items()})
    if free_avg:
        dyn_loss = tf.maximum(tf.reduce_mean(dyn_kl), free)
        rep_loss = tf.maximum(tf.reduce_mean(rep_kl), free)
    else:
        dyn_loss = tf.reduce_mean(tf.maximum(dyn_kl, free))
        rep_loss = tf.reduce_mean(tf.maximum(rep_kl, free))
    loss = dyn * dyn_loss + rep * rep_loss
    return loss, {'kl': tf.reduce_mean(dyn_kl), 'dyn_loss': dyn_loss, 'rep_loss': rep_loss}


class Reconstruction(tf.Module):
    """The papers' representation: a decoder scored by -ln p(o_t | s_t) per observation key.

    A representation component (the other is contrastive.Contrastive) offers the world
    model `augment(obs, image_keys, seed)`, the encoder's training input, and
    `losses(feat, embed, obs, data)`: ({name: loss} scaled by `loss_scales`, metrics);
    `decodes`: whether it has a `decoder` (open-loop videos need one).
    """

    decodes = True

    def __init__(self, decoder):
        super().__init__(name='reconstruction')
        self.decoder = decoder

    @classmethod
    def from_config(cls, obs_space, act_space, feat_size, embed_size, config, compute_dtype):
        # Built in the world model's name scope, so the decoder's variables keep their names.
        return cls(heads.Decoder(obs_space, feat_size, **config.decoder,
                                 compute_dtype=compute_dtype))

    def augment(self, obs, image_keys, seed):
        return obs

    def losses(self, feat, embed, obs, data):
        targets = self.decoder.targets(obs)
        losses = {f'recon_{key}': -tf.reduce_mean(dist.log_prob(targets[key]))
                  for key, dist in self.decoder(feat).items()}
        return losses, {}


REPRESENTATIONS = {'reconstruction': Reconstruction, 'contrastive': Contrastive}

# The reward head's target (danijar/dreamerv2 `clip_rewards`: tanh for Atari). The
# agent then imagines and learns from transformed rewards; logged returns stay raw.
REWARD_TRANSFORMS = {'identity': tf.identity, 'tanh': tf.tanh, 'sign': tf.sign}


class WorldModel(tf.Module):
    def __init__(self, obs_space, act_space, config, compute_dtype=tf.float32, name='world_model'):
        super().__init__(name=name)
        self.config = config
        self.dtype = compute_dtype
        if config.representation not in REPRESENTATIONS:
            raise ValueError(
                f'representation must be one of {tuple(REPRESENTATIONS)}, '
                f'got {config.representation!r}'
            )
        if not 1 <= config.image_bits <= 8:
            raise ValueError(f'image_bits must be in 1..8, got {config.image_bits}')
        if config.reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(
                f'reward_transform must be one of {sorted(REWARD_TRANSFORMS)}, '
                f'got {config.reward_transform!r}'
            )
        with self.name_scope:
            self.encoder = heads.Encoder(obs_space, **config.encoder, compute_dtype=compute_dtype)
            self.rssm = RSSM(
                act_space.n, self.encoder.out_size, **config.rssm, compute_dtype=compute_dtype
            )
            feat = self.rssm.feat_size
            # Dreaming builds no decoder: none of its variables exist to train or save.
            self.representation = REPRESENTATIONS[config.representation].from_config(
                obs_space, act_space, feat, self.encoder.out_size, config, compute_dtype
            )
            self.reward = heads.Head(
                feat, **config.reward_head, compute_dtype=compute_dtype, name='reward'
            )
            cont = dict(config.cont_head)
            enabled = cont.pop('enabled')
            self.cont = (
                heads.Head(feat, **cont, dist='binary', compute_dtype=compute_dtype, name='cont')
                if enabled
                else None
            )

    def preprocess(self, obs, seed, augment):
        """Images as the encoder (and decoder) see them: quantised (`image_bits`) and,
        with `augment`, as the representation augments them (Dreaming's random crop).

        obs: dict of [B, ...] or [B, T, ...] tensors. At 8 bits without augmentation
        obs comes back unchanged; quantised images are float32 in [0, 255] units
        (what heads.image_to_float expects); cropping keeps the dtype.
        """
        keys = self.encoder.cnn_keys
        seed_noise, seed_crop = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if self.config.image_bits < 8:
            obs = dict(obs)
            for i, key in enumerate(keys):
                obs[key] = quantise(
                    obs[key], self.config.image_bits, tf.random.fold_in(seed_noise, i)
                )
        if augment:
            obs = self.representation.augment(obs, keys, seed_crop)
        return obs

    def loss(self, data, seed):
        """World-model loss on a batch of sequences. Returns (loss, post, metrics)."""
        cfg = self.config
        obs = self.preprocess(data, tf.random.fold_in(seed, AUGMENT_STREAM), augment=True)
        embed = self.encoder(obs)
        post, prior = self.rssm.observe(embed, data['action'], data['is_first'], seed)
        feat = self.rssm.feat(post)
        losses, metrics = self.representation.losses(feat, embed, obs, data)
        reward = REWARD_TRANSFORMS[cfg.reward_transform](tf.cast(data['reward'], tf.float32))
        losses['reward'] = -tf.reduce_mean(self.reward(feat).log_prob(reward))
        if self.cont is not None:
            cont = 1.0 - tf.cast(data['is_terminal'], tf.float32)
            losses['cont'] = -tf.reduce_mean(self.cont(feat).log_prob(cont))
        kl, kl_metrics = kl_loss(post, prior, self.rssm, **cfg.kl)
        metrics.update(kl_metrics)
        scales = cfg.loss_scales
        total = kl + sum(scales[k.split('_')[0]] * v for k, v in losses.items())
        metrics.update({f'{k}_loss': v for k, v in losses.items()})
        metrics['model_loss'] = total
        return total, post, metrics


def quantise(image, bits, seed):
    """PlaNet's image preprocessing in heads.image_to_float's [0, 255] units.

    floor(o / 2^(8 - bits)) + u, u ~ U(0, 1), is in units of one level; times
    255 / 2^bits it maps through image_to_float (x / 255 - 0.5) to exactly
    planet's (floor(o / 2^(8 - bits)) + u) / 2^bits - 0.5.
    """
    levels = 2.0**bits
    level = tf.floor(tf.cast(image, tf.float32) / 2.0 ** (8 - bits))
    noise = distribute.stateless_uniform(tf.shape(level), seed)
    return (level + noise) * (255.0 / levels)
