"""Dreaming's reconstruction-free representation objective.

Dreaming (Okada & Taniguchi, ICRA 2021, arXiv 2007.14535) and DreamingV2
(Okada & Taniguchi 2022, arXiv 2203.00494) keep Dreamer's RSSM, reward head,
KL term and behaviour learning, and replace the observation decoder by a
contrastive (InfoMax) term. No public code exists; the papers' text was not
reachable from this project's machines, so the equations below are written
out in full rather than cited by number, and every choice the abstracts leave
open is a config key (block `contrastive` in configs.yaml).

1. From Dreamer's ELBO to InfoNCE. Dreamer's reconstruction objective
   (DreamerV1 eq. 10) scores ln q(o_t | s_t). By Bayes' rule
       ln q(o_t | s_t) = ln q(s_t | o_t) - ln q(s_t) + ln q(o_t),
   and ln q(o_t) does not depend on the model, so in expectation the term is
   the mutual information I(s_t; o_t) plus a constant (DreamerV1 sec. 4
   "contrastive estimation" takes the same step). Dreaming bounds it from
   below with InfoNCE (van den Oord et al. 2018, eq. 4), using the other
   observations in the batch O' as negatives:
       J_NCE^t = ln f(s_t, o_t) - ln sum_{o' in O' + {o_t}} f(s_t, o').
   The loss is -J_NCE averaged over the batch: a cross-entropy whose logits
   are the scores of s_t against every observation embedding in the batch,
   with the own observation as the label (`info_nce`).
2. Score function. f(s, o) = exp(score(s, o) / temperature) with
   - `bilinear` (default): score = s^T W e(o), the log-bilinear model of CPC
     (van den Oord et al. 2018, eq. 3) that CURL also uses;
   - `cosine`: score = cos(s^T W, e(o)), as SimCLR, with a temperature.
   s is the model state fed to every head, concat(h_t, z_t): the state the
   decoder conditions on in the ELBO term being replaced. e(o) is the
   encoder's embedding of the (augmented) image, the same embedding the
   posterior q(z_t | h_t, e_t) reads; W is a learned matrix mapping states
   into the embedding space.
3. Overshooting. Dreaming adds contrastive terms k = 1..K steps ahead,
   predicting the state with an independent linear latent dynamics model
   instead of the RSSM transition (the abstract's "linear dynamics"; K = 3):
       s^_{t+k} = A s^_{t+k-1} + B a_{t+k-1} + b,    s^_t = s_t (posterior),
       J_NCE^{t,k} = ln f(s^_{t+k}, o_{t+k}) - ln sum_{o'} f(s^_{t+k}, o').
   Terms whose window crosses an episode start (`is_first` at t+1..t+k) are
   masked out. Gradients flow into the posterior states, so the
   representation is shaped to be linearly predictable several steps ahead.
   Each k is a separate loss `contrast_k`, all weighted by
   `loss_scales.contrast`.
4. Augmentation. Images are randomly shifted (`random_crop`): padded by
   `crop_pad` pixels replicating the border (as DrQ, Kostrikov et al. 2020)
   and cropped back to the original size. One shift per sequence, shared by
   its time steps: the RSSM's transition should not have to explain camera
   jitter between consecutive frames that the environment does not produce.
   Vector observations are not augmented, and the policy sees the unshifted
   image (the centre crop).
"""

import tensorflow as tf

from dreamer_tf import distribute, nn

SCORES = ('bilinear', 'cosine')


def random_crop(images, pad, seed):
    """Shift images [B, ..., H, W, C] by up to `pad` pixels, one shift per row of B.

    Equivalent to padding by `pad` with the border pixels replicated and
    cropping a random H x W window: output pixel (i, j) reads input pixel
    (clip(i + dy - pad), clip(j + dx - pad)) with dy, dx uniform in [0, 2 pad].
    """
    if pad < 0:
        raise ValueError(f'crop padding must be >= 0, got {pad}')
    if pad == 0:
        return images
    rank = images.shape.rank
    if rank is None or rank < 4:
        raise ValueError(f'random_crop needs images shaped [B, ..., H, W, C], got {images.shape}')
    height, width = images.shape[-3], images.shape[-2]
    shift = distribute.stateless_uniform(
        [tf.shape(images)[0], 2], seed, 0, 2 * pad + 1, tf.int32
    )
    rows = tf.clip_by_value(tf.range(height)[None] + shift[:, :1] - pad, 0, height - 1)
    cols = tf.clip_by_value(tf.range(width)[None] + shift[:, 1:] - pad, 0, width - 1)
    images = tf.gather(images, rows, axis=rank - 3, batch_dims=1)
    return tf.gather(images, cols, axis=rank - 2, batch_dims=1)


def scores(queries, keys, score, temperature):
    """Logits score(q_i, k_j) / temperature, [M, N], for queries [M, E] and keys [N, E]."""
    if score not in SCORES:
        raise ValueError(f'contrastive score must be one of {SCORES}, got {score!r}')
    if temperature <= 0:
        raise ValueError(f'contrastive temperature must be > 0, got {temperature}')
    if score == 'cosine':
        queries = tf.math.l2_normalize(queries, -1)
        keys = tf.math.l2_normalize(keys, -1)
    return tf.matmul(queries, keys, transpose_b=True) / temperature


def info_nce(queries, keys, labels, score='bilinear', temperature=1.0):
    """-J_NCE per query and whether the query ranks its own key first, both [M].

    -J_NCE_i = -ln softmax_j(score(q_i, k_j) / temperature)[labels_i]. `queries`
    are states already mapped into the key space (s^T W); `keys` are all
    observation embeddings of the batch, the positives and the negatives;
    `labels[i]` is the index of query i's own observation.
    """
    logits = scores(queries, keys, score, temperature)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    correct = tf.equal(tf.argmax(logits, -1, output_type=labels.dtype), labels)
    return loss, correct


class LinearDynamics(tf.Module):
    """Dreaming's independent linear latent dynamics: s^_{t+1} = A s^_t + B a_t + b."""

    def __init__(self, state_size, act_dim, name='linear_dynamics'):
        super().__init__(name=name)
        with self.name_scope:
            self.linear = nn.Linear(state_size + act_dim, state_size, name='linear')

    def __call__(self, state, action):
        return self.linear(tf.concat([state, tf.cast(action, state.dtype)], -1))

    def rollout(self, states, actions, is_first, steps):
        """Predictions k = 0..steps ahead from every start time.

        states [B, T, S] (posterior), actions [B, T, A] (actions[:, t] = a_{t-1}),
        is_first [B, T]. Returns a list of (predicted [B, T-k, S], valid [B, T-k])
        where predicted[:, t] estimates the state at t + k and valid is false
        where an episode starts between t and t + k.
        """
        length = states.shape[1]
        if length is not None and length <= steps:
            raise ValueError(
                f'overshooting {steps} steps needs sequences longer than {steps}, got {length}'
            )
        pred = states
        valid = tf.ones(tf.shape(is_first), tf.bool)
        out = [(pred, valid)]
        for k in range(1, steps + 1):
            pred = self(pred[:, :-1], actions[:, k:])
            valid = valid[:, :-1] & ~tf.cast(is_first[:, k:], tf.bool)
            out.append((pred, valid))
        return out


class Contrastive(tf.Module):
    """Dreaming's representation component: InfoNCE at 0..overshoot steps ahead (module
    docstring), in place of world_model.Reconstruction's decoder."""

    decodes = False

    def __init__(
        self,
        feat_size,
        embed_size,
        act_dim,
        *,
        score,
        temperature,
        overshoot,
        crop_pad,
        compute_dtype=tf.float32,
        name='contrastive',
    ):
        super().__init__(name=name)
        if score not in SCORES:
            raise ValueError(f'contrastive.score must be one of {SCORES}, got {score!r}')
        if temperature <= 0:
            raise ValueError(f'contrastive.temperature must be > 0, got {temperature}')
        if overshoot < 0:
            raise ValueError(f'contrastive.overshoot must be >= 0, got {overshoot}')
        if crop_pad < 0:
            raise ValueError(f'contrastive.crop_pad must be >= 0, got {crop_pad}')
        self.score, self.temperature = score, temperature
        self.overshoot, self.crop_pad = overshoot, crop_pad
        self.dtype = compute_dtype
        with self.name_scope:
            # W of the score s^T W e: maps a model state into the embedding space.
            self.project = nn.Linear(feat_size, embed_size, bias=False, name='project')
            self.dynamics = LinearDynamics(feat_size, act_dim) if overshoot else None

    @classmethod
    def from_config(cls, obs_space, act_space, feat_size, embed_size, config, compute_dtype):
        return cls(feat_size, embed_size, act_space.n, **config.contrastive,
                   compute_dtype=compute_dtype)

    def augment(self, obs, image_keys, seed):
        """Random-crop the image keys of a batch of sequences; other keys pass through."""
        if not self.crop_pad:
            return obs
        # One seed for all image keys: the encoder stacks them as channels of one
        # image, so they must shift together.
        return {
            k: random_crop(v, self.crop_pad, seed) if k in image_keys else v for k, v in obs.items()
        }

    def losses(self, feat, embed, obs, data):
        """The representation component's losses (world_model.Reconstruction): `loss`."""
        return self.loss(feat, embed, data['action'], data['is_first'])

    def loss(self, feat, embed, action, is_first):
        """feat [B, T, F] posterior states, embed [B, T, E]; returns (losses, metrics).

        losses maps `contrast_k` to the mean -J_NCE at k steps ahead.
        """
        batch, length = tf.shape(feat)[0], feat.shape[1]
        keys = tf.cast(tf.reshape(embed, [-1, embed.shape[-1]]), tf.float32)
        if self.dynamics is None:
            rollouts = [(feat, tf.ones(tf.shape(is_first), tf.bool))]
        else:
            rollouts = self.dynamics.rollout(
                tf.cast(feat, self.dtype), action, is_first, self.overshoot
            )
        losses, metrics = {}, {}
        for k, (pred, valid) in enumerate(rollouts):
            span = length - k
            queries = tf.cast(self.project(tf.cast(pred, self.dtype)), tf.float32)
            queries = tf.reshape(queries, [-1, keys.shape[-1]])
            # Query (b, t) predicts observation (b, t + k): flat index b * T + t + k.
            labels = tf.reshape(tf.range(batch)[:, None] * length + tf.range(span)[None] + k, [-1])
            loss, correct = info_nce(queries, keys, labels, self.score, self.temperature)
            mask = tf.cast(tf.reshape(valid, [-1]), tf.float32)
            count = tf.maximum(tf.reduce_sum(mask), 1.0)
            losses[f'contrast_{k}'] = tf.reduce_sum(mask * loss) / count
            metrics[f'contrast_{k}_acc'] = (
                tf.reduce_sum(mask * tf.cast(correct, tf.float32)) / count
            )
        return losses, metrics
