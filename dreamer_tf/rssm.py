"""The recurrent state-space model (RSSM) shared by every preset.

State s_t = (h_t, z_t): a deterministic GRU state h_t ("deter") and a
stochastic latent z_t ("stoch"), PlaNet (Hafner et al. 2019, eq. 3-4):
    h_t = f(h_{t-1}, z_{t-1}, a_{t-1})        deterministic recurrence (GRU)
    z_t ~ p(z_t | h_t)                        prior, used to imagine
    z_t ~ q(z_t | h_t, e_t)                   posterior, given the embedding e_t
The latent is either a diagonal Gaussian (PlaNet, DreamerV1) or `stoch`
categoricals with `classes` classes sampled straight-through (DreamerV2,
with DreamerV3's optional uniform mix).

A state is a dict of float32 tensors: `deter`, `stoch` (flattened), and the
distribution's parameters (`mean`, `std` or `logit`). Sequence tensors are
batch-major [B, T, ...] at the interface and time-major inside `tf.scan`.
"""

import tensorflow as tf

from dreamer_tf import dists, nn

sg = tf.stop_gradient


class RSSM(tf.Module):
    def __init__(
        self,
        act_dim,
        embed_dim,
        *,
        deter,
        hidden,
        stoch,
        classes,
        unimix=0.0,
        act='silu',
        norm='none',
        gru_norm=True,
        initial='zeros',
        min_std=0.1,
        compute_dtype=tf.float32,
        name='rssm',
    ):
        super().__init__(name=name)
        self.deter, self.stoch, self.classes = deter, stoch, classes
        self.unimix, self.min_std = unimix, min_std
        self.dtype = compute_dtype
        self.act_dim = act_dim
        self.stoch_size = stoch * classes if classes else stoch
        stats_size = stoch * classes if classes else 2 * stoch
        if initial not in ('zeros', 'learned'):
            raise ValueError(f"rssm.initial must be 'zeros' or 'learned', got {initial!r}")
        self.initial_kind = initial
        with self.name_scope:
            self.img_in = nn.Dense(self.stoch_size + act_dim, hidden, act, norm, name='img_in')
            self.gru = nn.GRUCell(
                hidden, deter, norm=gru_norm, update_bias=-1.0 if gru_norm else 0.0, name='gru'
            )
            self.img_out = nn.Dense(deter, hidden, act, norm, name='img_out')
            self.img_stats = nn.Linear(hidden, stats_size, name='img_stats')
            self.obs_out = nn.Dense(deter + embed_dim, hidden, act, norm, name='obs_out')
            self.obs_stats = nn.Linear(hidden, stats_size, name='obs_stats')
            if initial == 'learned':
                # DreamerV3: h_0 = tanh(w) with w learned, z_0 the prior's mode at h_0.
                self.initial_deter = tf.Variable(tf.zeros((deter,)), name='initial_deter')

    @property
    def feat_size(self):
        return self.deter + self.stoch_size

    def feat(self, state):
        """The model state fed to every head: concat(h, z)."""
        return tf.concat([state['deter'], state['stoch']], -1)

    def initial(self, batch_size):
        if self.initial_kind == 'zeros':
            deter = tf.zeros((batch_size, self.deter))
            stats = self._zero_stats(batch_size)
            return {'deter': deter, 'stoch': tf.zeros((batch_size, self.stoch_size)), **stats}
        # A broadcast product, not tf.repeat: its gradient keeps static shapes under XLA.
        deter = tf.tanh(self.initial_deter)[None] * tf.ones((batch_size, 1))
        stats = self._prior_stats(deter)
        return {'deter': deter, 'stoch': self.latent_dist(stats).mode(), **stats}

    def _zero_stats(self, batch_size):
        if self.classes:
            return {'logit': tf.zeros((batch_size, self.stoch, self.classes))}
        return {
            'mean': tf.zeros((batch_size, self.stoch)),
            'std': tf.ones((batch_size, self.stoch)),
        }

    def _stats(self, x):
        x = tf.cast(x, tf.float32)
        if self.classes:
            logit = tf.reshape(x, tf.concat([tf.shape(x)[:-1], [self.stoch, self.classes]], 0))
            return {'logit': dists.unimix_logits(logit, self.unimix)}
        mean, std = tf.split(x, 2, -1)
        return {'mean': mean, 'std': tf.nn.softplus(std) + self.min_std}

    def latent_dist(self, stats):
        if self.classes:
            return _Flat(dists.OneHot(stats['logit']))
        return dists.Normal(stats['mean'], stats['std'])

    def _recur(self, prev, prev_action):
        """h_t = f(h_{t-1}, z_{t-1}, a_{t-1}), the deterministic GRU step.

        Actions are scaled into [-1, 1] with a stop-gradient scale, as
        DreamerV3's `action_clip`: its unbounded Normal actor would otherwise
        feed imagination actions the replayed (clipped) data never had. A
        no-op for one-hot, tanh-Normal and truncated-Normal actions.
        """
        prev_action = tf.cast(prev_action, tf.float32)
        prev_action = prev_action * sg(1.0 / tf.maximum(1.0, tf.abs(prev_action)))
        x = tf.concat([prev['stoch'], prev_action], -1)
        x = self.img_in(tf.cast(x, self.dtype))
        return tf.cast(self.gru(x, tf.cast(prev['deter'], self.dtype)), tf.float32)

    def _prior_stats(self, deter):
        """The parameters of p(z_t | h_t), for h_t of any leading shape."""
        return self._stats(self.img_stats(self.img_out(tf.cast(deter, self.dtype))))

    def img_step(self, prev, prev_action, seed):
        """Prior step: s_{t-1}, a_{t-1} -> h_t, z_t ~ p(z_t | h_t)."""
        deter = self._recur(prev, prev_action)
        stats = self._prior_stats(deter)
        stoch = self.latent_dist(stats).sample(seed)
        return {'deter': deter, 'stoch': stoch, **stats}

    def obs_step(self, prev, prev_action, embed, is_first, seed, init=None):
        """Filter step: the posterior state at t given e_t.

        Where `is_first` is set the previous state and action are replaced by the
        initial state `init` (computed here if not given) and zeros, so
        sequences may span episode boundaries. Filtering never needs the prior.
        """
        if init is None:
            init = self.initial(tf.shape(is_first)[0])
        prev, prev_action = self._reset(prev, prev_action, is_first, init)
        w_deter, w_embed = self.obs_out.linear.split([self.deter, -1])
        return self._filter(prev, prev_action, self._embed_term(embed, w_embed), w_deter, seed)

    def _embed_term(self, embed, w_embed):
        """e_t W_e + b: the embedding's part of the posterior layer's pre-activation."""
        return self.obs_out.linear.add_bias(nn.dot(tf.cast(embed, self.dtype), w_embed))

    def _filter(self, prev, prev_action, embed_term, w_deter, seed):
        """h_t, then z_t ~ q(z_t | h_t, e_t) from the pre-activation h_t W_h + e_t W_e + b."""
        # Two streams, the first unused: tests/data/fingerprints.json pins these samples.
        seed = tf.random.experimental.stateless_split(seed, 2)[1]
        deter = self._recur(prev, prev_action)
        x = nn.dot(tf.cast(deter, self.dtype), w_deter) + embed_term
        stats = self._stats(self.obs_stats(self.obs_out.activate(x)))
        return {'deter': deter, 'stoch': self.latent_dist(stats).sample(seed), **stats}

    def _reset(self, prev, prev_action, is_first, init):
        # A select, not mask * init + (1 - mask) * prev: 0 * NaN is NaN, and a state
        # that went non-finite must not outlive its episode.
        first = tf.cast(is_first, tf.bool)
        prev = {k: _select(first, init[k], v) for k, v in prev.items()}
        prev_action = tf.cast(prev_action, tf.float32)
        return prev, _select(first, tf.zeros_like(prev_action), prev_action)

    def observe(self, embed, action, is_first, seed, state=None):
        """Filter a sequence. embed [B,T,E], action [B,T,A] (a_{t-1}), is_first [B,T].

        Returns (post, prior), dicts of [B, T, ...] tensors: the posterior states
        and the prior's parameters beside `deter`. Only the KL loss reads the
        prior, so it is computed for all steps after the scan and never sampled,
        as in the authors' `RSSM.loss` (danijar/dreamerv3, dreamerv3/rssm.py).
        """
        batch, length = tf.shape(embed)[0], embed.shape[1]
        # The learned initial state is an MLP of a variable: computed once per
        # sequence batch rather than at every step of the scan.
        init = self.initial(batch)
        state = init if state is None else state
        seeds = tf.random.experimental.stateless_split(seed, length)
        swap = lambda x: tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))
        # The embedding's part of the posterior layer does not depend on the
        # recurrence: one large matmul for all steps instead of one per step.
        w_deter, w_embed = self.obs_out.linear.split([self.deter, -1])
        embed_term = self._embed_term(embed, w_embed)
        elems = (swap(tf.cast(action, tf.float32)), swap(embed_term), swap(is_first), seeds)

        def step(prev, inputs):
            prev_action, term, first, step_seed = inputs
            prev, prev_action = self._reset(prev, prev_action, first, init)
            return self._filter(prev, prev_action, term, w_deter, step_seed)

        post = {k: swap(v) for k, v in tf.scan(step, elems, initializer=state).items()}
        return post, {'deter': post['deter'], **self._prior_stats(post['deter'])}

    def imagine(self, policy, start, horizon, seed, aux_size=0):
        """Roll the prior forward `horizon` steps from `start` (dict of [N, ...]).

        `policy(feat, seed)` returns (action, aux): the action and `aux_size`
        extra numbers per row that the caller wants kept (the actor's
        distribution parameters, so that its loss need not run the actor
        again). Its input is stop-gradiented as in Dreamer (V1
        `imagine_ahead`, V2/V3 `imagine`), while gradients flow from the
        imagined states back through actions into the policy (dynamics
        backpropagation). Returns (states dict of [H+1, N, ...] including the
        start, actions [H, N, A] and aux [H, N, aux_size], where actions[t] is
        taken in states[t]). States hold `deter` and `stoch` only: the prior's
        parameters are not kept, which saves writing (and zero-filling the
        gradient of) a [H, N, stoch, classes] tensor no loss reads.
        """
        seeds = tf.random.experimental.stateless_split(seed, horizon)
        start = {'deter': start['deter'], 'stoch': start['stoch']}
        step = lambda carry, step_seed: self.imagine_step(policy, carry[0], step_seed)
        rows = tf.shape(start['deter'])[0]
        initializer = (start, tf.zeros((rows, self.act_dim)), tf.zeros((rows, aux_size)))
        states, actions, aux = tf.scan(step, seeds, initializer=initializer)
        states = {k: tf.concat([start[k][None], v], 0) for k, v in states.items()}
        return states, actions, aux

    def imagine_step(self, policy, state, seed):
        """One step of `imagine`: (next state {deter, stoch}, action, aux)."""
        seed_act, seed_img = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        action, aux = policy(sg(self.feat(state)), seed_act)
        new = self.img_step(state, action, seed_img)
        return {'deter': new['deter'], 'stoch': new['stoch']}, action, aux

    def kl(self, post, prior):
        """KL(post || prior) per step, summed over latent dimensions."""
        if self.classes:
            return dists.kl_categorical(post['logit'], prior['logit'])
        return dists.kl_normal(post['mean'], post['std'], prior['mean'], prior['std'])


def _select(first, init, value):
    """`init` in the rows where `first` [B] is set, else `value` (both [B, ...])."""
    first = tf.reshape(
        first, tf.concat([tf.shape(first), tf.ones([value.shape.rank - 1], tf.int32)], 0)
    )
    return tf.where(first, tf.cast(init, value.dtype), value)


class _Flat:
    """Flattens [.., G, C] one-hot samples of a categorical latent to [.., G*C]."""

    def __init__(self, dist):
        self.dist = dist

    def _flat(self, x):
        return tf.reshape(x, tf.concat([tf.shape(x)[:-2], [x.shape[-2] * x.shape[-1]]], 0))

    def sample(self, seed):
        return self._flat(self.dist.sample(seed))

    def mode(self):
        return self._flat(self.dist.mode())
