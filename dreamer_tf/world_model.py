"""World model: encoder + RSSM + decoder, reward and continuation heads, and its loss.

Loss (one form covering the three papers):
    L = sum_k scale_k * E[-ln p(x_k | s_t)]            reconstruction, reward, continuation
        + dyn * clip(KL[sg(q) || p]) + rep * clip(KL[q || sg(p)])
The two KL terms are:
- DreamerV3 (eq. 5): dyn 0.5, rep 0.1, free bits 1 clipped per step
    (`free_avg: false`): max(1, KL) for each (batch, time) element.
- DreamerV2 KL balancing (eq. 2 / alg. 2): dyn = alpha = 0.8, rep = 1 - alpha,
    with free nats applied to the batch-mean KL (`free_avg: true`,
    danijar/dreamerv2 `kl.free_avg`).
- DreamerV1/PlaNet (eq. 10 / free nats): plain KL[q || p] with free nats 3
    on the mean. Because both terms have the same value and their gradients
    add up to the unbalanced KL's, dyn = rep = 0.5 with `free_avg: true`
    reproduces it exactly.
"""

import tensorflow as tf

from dreamer_tf import heads
from dreamer_tf.rssm import RSSM

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


class WorldModel(tf.Module):
    def __init__(self, obs_space, act_space, config, compute_dtype=tf.float32, name='world_model'):
        super().__init__(name=name)
        self.config = config
        self.dtype = compute_dtype
        with self.name_scope:
            self.encoder = heads.Encoder(obs_space, **config.encoder, compute_dtype=compute_dtype)
            self.rssm = RSSM(
                act_space.n, self.encoder.out_size, **config.rssm, compute_dtype=compute_dtype
            )
            feat = self.rssm.feat_size
            self.decoder = heads.Decoder(
                obs_space, feat, **config.decoder, compute_dtype=compute_dtype
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

    def loss(self, data, seed):
        """World-model loss on a batch of sequences. Returns (loss, post, metrics)."""
        cfg = self.config
        embed = self.encoder(data)
        post, prior = self.rssm.observe(embed, data['action'], data['is_first'], seed)
        feat = self.rssm.feat(post)
        losses = {}
        targets = self.decoder.targets(data)
        for key, dist in self.decoder(feat).items():
            losses[f'recon_{key}'] = -tf.reduce_mean(dist.log_prob(targets[key]))
        losses['reward'] = -tf.reduce_mean(self.reward(feat).log_prob(data['reward']))
        if self.cont is not None:
            cont = 1.0 - tf.cast(data['is_terminal'], tf.float32)
            losses['cont'] = -tf.reduce_mean(self.cont(feat).log_prob(cont))
        kl, metrics = kl_loss(post, prior, self.rssm, **cfg.kl)
        scales = cfg.loss_scales
        total = kl + sum(scales[k.split('_')[0]] * v for k, v in losses.items())
        metrics.update({f'{k}_loss': v for k, v in losses.items()})
        metrics['model_loss'] = total
        return total, post, metrics
