"""Actor-critic learning in imagination (DreamerV1 sec. 3, DreamerV2 sec. 2.3, DreamerV3 sec. 3).

Trajectories s_0..s_H are imagined from posterior start states. With
r_t = reward(s_t), c_t = continuation(s_t) (1 without a continuation head),
d_t = gamma * c_t and critic values v_t, the lambda-return is

    R_t = r_{t+1} + d_{t+1} ((1 - lambda) v_{t+1} + lambda R_{t+1}),   R_H = v_H

(V1 eq. 6, V2 eq. 4, V3 eq. 7). The reward of reaching s_{t+1} is paired with
v_{t+1}, as in DreamerV3's code (`rew[1:]`); danijar/dreamerv2 paired
reward(s_t) with v_{t+1} (`reward[:-1]`), an index shift V3 dropped; all
presets here use V3's pairing.
Every loss term at step t is weighted by
w_t = c_0 prod_{i=1..t} d_i, the probability-weighted discount of reaching s_t.

Actor objective per step (maximised), selected by config:
- dynamics backpropagation (V1 eq. 8, V2/V3 continuous): R_t, optionally
    minus the baseline v_t (V3) and divided by the return scale S (V3);
- REINFORCE (V2 eq. 6 / V3 discrete): ln pi(a_t|s_t) sg(R_t - v_t) (/ S for V3);
- plus `entropy` times the policy entropy (V2 eq. 6, V3 eq. 11).
V3's return scale S = max(1, EMA(P95(R)) - EMA(P5(R))) (eq. 12).
Critic: -ln p(sg(R_t) | s_t), plus V3's regulariser towards the slow
critic's prediction (weight `slow_reg`). The slow critic tracks the critic by
`slow_fraction` every `slow_update_every` updates (V2: hard copy every 100;
V3: EMA 0.02 every update); V2 also computes R_t with the slow critic
(`slow_returns`).
"""

import numpy as np
import tensorflow as tf

from dreamer_tf import distribute, dists, heads, nn
from dreamer_tf.optim import Adam, prefixed

sg = tf.stop_gradient


def lambda_return(reward, value, discount, lam):
    """TD(lambda) returns. reward, discount: [H, ...] for steps 1..H; value: [H+1, ...].

    Returns R_0..R_{H-1} as [H, ...] (see the module docstring).
    """
    inputs = reward + discount * (1 - lam) * value[1:]
    # Unrolled over the (static, short) horizon rather than a tf.scan: a loop
    # recorded by two gradient tapes (actor and critic) gets wrapped by TF in
    # forward/backward functions that zero-fill every unused accumulator.
    returns, acc = [], value[-1]
    for x, d in zip(tf.unstack(inputs)[::-1], tf.unstack(discount)[::-1]):
        acc = x + d * lam * acc
        returns.append(acc)
    return tf.stack(returns[::-1])


def quantile(x, q):
    """Linear-interpolated quantile of all entries of x, q in [0, 1] (as numpy's default)."""
    x = tf.sort(tf.reshape(x, [-1]))
    pos = q * tf.cast(tf.size(x) - 1, tf.float32)
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, tf.size(x) - 1)
    frac = pos - tf.floor(pos)
    return tf.gather(x, lo) * (1 - frac) + tf.gather(x, hi) * frac


class ReturnNorm(tf.Module):
    """DreamerV3's percentile return scale: EMAs of the 5th and 95th percentiles (eq. 12)."""

    def __init__(self, decay=0.99, limit=1.0, low=5.0, high=95.0, name='retnorm'):
        super().__init__(name=name)
        self.decay, self.limit = decay, limit
        self.qlow, self.qhigh = low / 100, high / 100
        self.low = tf.Variable(0.0, trainable=False, name='low')
        self.high = tf.Variable(0.0, trainable=False, name='high')

    def __call__(self, returns):
        """The scale S after seeing `returns`, and the statistics to `assign`: (S, (low, high)).

        Under data parallelism the percentiles are taken over the returns of
        all replicas (distribute.gather), so every replica gets the same S.
        The statistics are stored by `assign`, in the update's cross-replica
        step (an assignment inside a replica would need a merge_call).
        """
        returns = distribute.gather(sg(tf.cast(returns, tf.float32)))
        low = self.decay * self.low + (1 - self.decay) * quantile(returns, self.qlow)
        high = self.decay * self.high + (1 - self.decay) * quantile(returns, self.qhigh)
        return tf.maximum(self.limit, high - low), (low, high)

    def assign(self, stats, applied=True):
        """Stores `stats` where `applied` and they are finite; else keeps the old ones."""
        keep = tf.logical_not(tf.logical_and(
            applied, tf.reduce_all(tf.math.is_finite(tf.stack(stats)))))
        self.low.assign(tf.where(keep, self.low, stats[0]))
        self.high.assign(tf.where(keep, self.high, stats[1]))


class Actor(tf.Module):
    """pi(a_t | s_t). Discrete: one-hot categorical (optional unimix). Continuous:

    - 'tanh_normal' (V1): tanh(N(5 tanh(mu/5), softplus(sigma + softplus^-1(init_std)) + min_std));
    - 'trunc_normal' (V2): N(tanh(mu), 2 sigmoid((sigma + init_std)/2) + min_std) truncated
      to [-1, 1];
    - 'normal' (V3): N(tanh(mu), (max_std - min_std) sigmoid(sigma + init_std) + min_std).
    """

    def __init__(self, feat_size, act_space, cfg, compute_dtype=tf.float32, name='actor'):
        super().__init__(name=name)
        self.discrete, self.n = act_space.discrete, act_space.n
        self.kind = 'onehot' if self.discrete else cfg.dist_cont
        if self.kind not in ('onehot', 'tanh_normal', 'trunc_normal', 'normal'):
            raise ValueError(
                f"actor.dist_cont must be 'tanh_normal', 'trunc_normal' or 'normal', "
                f'got {self.kind!r}'
            )
        self.cfg, self.dtype = cfg, compute_dtype
        with self.name_scope:
            self.mlp = nn.MLP(feat_size, cfg.layers, cfg.units, cfg.act, cfg.norm, name='mlp')
            out = self.n if self.discrete else 2 * self.n
            self.out = nn.Linear(self.mlp.dout, out, outscale=cfg.outscale, name='out')

    @property
    def raw_size(self):
        return self.out.dout

    def __call__(self, feat):
        return self.dist_from(self.raw(feat))

    def raw(self, feat):
        """The network's float32 output, the distribution's unconstrained parameters."""
        return tf.cast(self.out(self.mlp(tf.cast(feat, self.dtype))), tf.float32)

    def dist_from(self, x):
        cfg = self.cfg
        if self.discrete:
            return dists.OneHot(dists.unimix_logits(x, cfg.unimix))
        mean, std = tf.split(x, 2, -1)
        if self.kind == 'tanh_normal':
            mean = 5.0 * tf.tanh(mean / 5.0)
            std = tf.nn.softplus(std + np.log(np.expm1(cfg.init_std))) + cfg.min_std
            return dists.Normal(mean, std, squash=True)
        if self.kind == 'trunc_normal':
            std = 2 * tf.sigmoid((std + cfg.init_std) / 2) + cfg.min_std
            return dists.TruncNormal(tf.tanh(mean), std)
        std = (cfg.max_std - cfg.min_std) * tf.sigmoid(std + cfg.init_std) + cfg.min_std
        return dists.Normal(tf.tanh(mean), std)

    def saturation(self, dist):
        """How far the squashed mean of `dist` (from `dist_from`, continuous) sits at the bounds.

        That is the mode for trunc_normal and normal, and tanh(loc) for
        tanh_normal, whose mode reaches the bounds whenever its std is large.
        `actor_mode_abs`: its mean |.|. `actor_dead`: the fraction of action
        dimensions whose mean sits where a tanh is exactly +-1 in float32, so
        that its gradient, 1 - tanh^2, is exactly 0: the actor's loss cannot
        move such a mean back, only a change of the world model's features can.
        That tanh is the squashing one for trunc_normal and normal (their means
        are unbounded before it), and the inner one of tanh_normal's
        5 tanh(mu / 5), saturated when the mean reaches 5 (|mu| of about 50).
        `actor_std`: the mean std of the Normal before squashing or
        truncation. Without an entropy bonus (V1) it can fall to `min_std`,
        and a squashed mean at the bound with such a std is a deterministic
        bang-bang policy whose samples equal its mode.
        """
        mode = sg(tf.tanh(dist.loc) if self.kind == 'tanh_normal' else dist.loc)
        bound = sg(tf.abs(dist.loc) / 5.0 if self.kind == 'tanh_normal' else tf.abs(mode))
        return {
            'actor_mode_abs': tf.reduce_mean(tf.abs(mode)),
            'actor_dead': tf.reduce_mean(tf.cast(bound >= 1.0, tf.float32)),
            'actor_std': tf.reduce_mean(sg(dist.std)),
        }


class ActorCritic(tf.Module):
    """The Dreamers' behaviour: an actor and a critic learned in imagination, each with its
    optimiser (`actor_opt`, `critic_opt`).

    A behaviour component (the other is planner.Planner) offers the agent:
    - `act(wm, latent, seed, explore)`: actions [N, A] at posterior states;
    - `train(wm, start, seed, replicas)`: its part of the update, after the world
      model's step, from the posterior states `start`; returns metrics;
    - `optimizers`: {role: optim.Adam}; `policy_variables()`: what `act` reads
      beyond the world model; `exportable`: whether `act` is one recurrent step an
      exporter can trace.
    """

    exportable = True

    def __init__(self, feat_size, act_space, config, compute_dtype=tf.float32, loss_scale=False,
                 name='behavior'):
        super().__init__(name=name)
        self.config = config
        actor_cfg, critic_cfg = config.actor, config.critic
        grad = actor_cfg.grad_disc if act_space.discrete else actor_cfg.grad_cont
        if grad not in ('dynamics', 'reinforce'):
            raise ValueError(f"actor gradient must be 'dynamics' or 'reinforce', got {grad!r}")
        self.grad = grad
        with self.name_scope:
            self.actor = Actor(feat_size, act_space, actor_cfg, compute_dtype)
            make_critic = lambda name: heads.Head(
                feat_size,
                layers=critic_cfg.layers,
                units=critic_cfg.units,
                act=critic_cfg.act,
                norm=critic_cfg.norm,
                dist=critic_cfg.dist,
                bins=critic_cfg.bins,
                outscale=critic_cfg.outscale,
                compute_dtype=compute_dtype,
                name=name,
            )
            self.critic = make_critic('critic')
            self.slow_critic = make_critic('slow_critic') if critic_cfg.slow_update_every else None
            self.retnorm = ReturnNorm(**config.retnorm) if actor_cfg.retnorm else None
            self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name='updates')
            self.actor_opt = Adam(self.actor.trainable_variables, **config.actor_opt,
                                  loss_scale=loss_scale, name='actor_opt')
            self.critic_opt = Adam(self.critic.trainable_variables, **config.critic_opt,
                                   loss_scale=loss_scale, name='critic_opt')
        if self.slow_critic is not None:
            for slow, var in zip(self.slow_critic.variables, self.critic.variables):
                slow.assign(var)

    @classmethod
    def from_config(cls, wm, act_space, config, compute_dtype, loss_scale):
        return cls(wm.rssm.feat_size, act_space, config, compute_dtype, loss_scale)

    @property
    def optimizers(self):
        return {'actor': self.actor_opt, 'critic': self.critic_opt}

    def policy_variables(self):
        return list(self.actor.variables)

    def act(self, wm, latent, seed, explore):
        """The actor's sample with `explore`, else its mode."""
        dist = self.actor(wm.rssm.feat(latent))
        return dist.sample(seed) if explore else dist.mode()

    def train(self, wm, start, seed, replicas):
        """Actor and critic steps on imagination from `start` (posterior states with
        their `cont`), their gradients computed on the replicas and applied once."""
        actor_grads, critic_grads, state, metrics = replicas.run(
            lambda start, seed: self._grads(wm, start, seed), start, seed
        )
        metrics = replicas.mean(metrics)
        actor_metrics = self.actor_opt.apply(replicas.mean(actor_grads))
        metrics.update(prefixed('actor', actor_metrics))
        metrics.update(prefixed('critic', self.critic_opt.apply(replicas.mean(critic_grads))))
        # Replicas computed identical statistics from the gathered returns.
        self.apply_state(replicas.first(state), actor_metrics['grad_finite'] > 0)
        return metrics

    def _grads(self, wm, start, seed):
        start = dict(start)
        start_cont = start.pop('cont')
        # The critic's tape opens after the imagination: see `losses`.
        with tf.GradientTape() as actor_tape:
            traj = self.imagine(wm, start, start_cont, seed)
            with tf.GradientTape() as critic_tape:
                critic_raw = self.critic.raw(traj['feat'])
                actor_loss, critic_loss, metrics, state = self.losses(traj, critic_raw)
        actor_grads = self.actor_opt.gradients(actor_tape, actor_loss)
        critic_grads = self.critic_opt.gradients(critic_tape, critic_loss)
        return actor_grads, critic_grads, state, metrics

    def imagine_policy(self, feat, seed):
        """The actor's sampled action at `feat`, with its raw output (kept for the loss)."""
        raw = self.actor.raw(feat)
        return self.actor.dist_from(raw).sample(seed), raw

    def imagine(self, wm, start, start_cont, seed):
        """Imagined trajectories from `start` under the actor, with their rewards,
        discounts and loss weights: a dict of [H(+1), N, ...] tensors."""
        cfg = self.config
        states, actions, actor_raw = wm.rssm.imagine(
            self.imagine_policy, start, cfg.imag.horizon, seed, self.actor.raw_size
        )
        feat = wm.rssm.feat(states)
        # Heads run on all H+1 states and their outputs are sliced: the gradient
        # of slicing the wide feature tensor itself costs a full-size copy.
        reward, discount = self.reward_and_discount(wm, feat)
        reward, discount = reward[1:], discount[1:]
        weight = sg(tf.math.cumprod(tf.concat([start_cont[None], discount[:-1]], 0), 0))
        return {
            'feat': feat,
            'actions': actions,
            'actor_raw': actor_raw,
            'reward': reward,
            'discount': discount,
            'weight': weight,
        }

    def reward_and_discount(self, wm, feat):
        """The model's reward for reaching each state of `feat`, and the discount
        after it: `imag.discount` times the continue head's mode or mean (1
        without a continue head)."""
        reward = wm.reward(feat).mean()
        if wm.cont is None:
            return reward, self.config.imag.discount * tf.ones_like(reward)
        cont_dist = wm.cont(feat)
        cont = cont_dist.mode() if self.config.imag.cont == 'mode' else cont_dist.mean()
        return reward, self.config.imag.discount * cont

    def losses(self, traj, critic_raw):
        """Actor and critic losses on an imagined trajectory.

        Returns (actor loss, critic loss, metrics, state): `state` holds the
        new return-normalisation statistics for `apply_state`, which the
        update calls after the optimisers.

        `critic_raw` is the critic's output on `traj['feat']`, one forward pass
        that both losses share. The caller computes it under two tapes: the
        actor's, which has recorded the imagination (with dynamics
        backpropagation the actor's gradient flows through the values, the
        imagined states and actions), and the critic's, opened only around the
        critic's forward pass and these losses, so that the imagination scan
        is recorded by one tape (a loop recorded by two tapes makes TF wrap
        it in forward/backward functions that zero-fill every unused
        accumulator). The states do not depend on the critic's weights, so its
        gradient equals that of the loss on stop-gradient states.
        """
        cfg = self.config
        feat, actions, reward = traj['feat'], traj['actions'], traj['reward']
        discount, weight = traj['discount'], traj['weight']
        if cfg.critic.slow_returns:
            value = self.slow_critic(feat).mean()
        else:
            value = self.critic.dist_from(critic_raw).mean()
        returns = lambda_return(reward, value, discount, cfg.imag['lambda'])
        baseline = value[:-1]
        state = {}
        if self.retnorm is not None:
            scale, state['retnorm'] = self.retnorm(returns)
        else:
            scale = tf.constant(1.0)
        # The actor's distributions at s_0..s_{H-1}, kept by the imagination scan.
        policy = self.actor.dist_from(traj['actor_raw'])
        metrics = {} if self.actor.discrete else self.actor.saturation(policy)
        if self.grad == 'dynamics':
            adv = returns - baseline if cfg.actor.backprop_baseline else returns
            objective = adv / scale
        else:
            adv = sg((returns - baseline) / scale)
            objective = policy.log_prob(sg(actions)) * adv
            metrics['advantage'] = tf.reduce_mean(adv)
        if cfg.actor.entropy:
            entropy = policy.entropy()
            objective += cfg.actor.entropy * entropy
            metrics['actor_entropy'] = tf.reduce_mean(entropy)
        actor_loss = -tf.reduce_mean(weight * objective)
        critic_loss = self.critic_loss(critic_raw[:-1], sg(feat[:-1]), sg(returns), weight)
        metrics.update(
            {
                'actor_loss': actor_loss,
                'critic_loss': critic_loss,
                'imag_return': tf.reduce_mean(returns),
                'imag_reward': tf.reduce_mean(reward),
                'return_scale': scale,
                'imag_value': tf.reduce_mean(value),
            }
        )
        return actor_loss, critic_loss, metrics, state

    def critic_loss(self, critic_raw, feat, returns, weight):
        """Critic regression towards sg(lambda-returns), plus V3's slow-critic regulariser."""
        dist = self.critic.dist_from(critic_raw)
        loss = -dist.log_prob(returns)
        slow_reg = self.config.critic.slow_reg
        if slow_reg:
            loss -= slow_reg * dist.log_prob(sg(self.slow_critic(feat).mean()))
        return tf.reduce_mean(weight * loss)

    def apply_state(self, state, applied):
        """After the optimisers' steps: store the return statistics of `losses` if the
        actor's step was `applied` (a boolean tensor; a skipped, non-finite update must
        not leave NaN statistics that would skip every later one) and move the slow
        critic towards the critic."""
        if 'retnorm' in state:
            self.retnorm.assign(state['retnorm'], applied)
        self._update_slow_critic()

    def _update_slow_critic(self):
        """Move the slow critic towards the critic every `slow_update_every` updates."""
        if self.slow_critic is None:
            return
        cfg = self.config.critic
        due = tf.equal(self.updates % cfg.slow_update_every, 0)
        mix = tf.where(due, cfg.slow_fraction, 0.0)
        for slow, var in zip(self.slow_critic.variables, self.critic.variables):
            slow.assign(mix * var + (1 - mix) * slow)
        self.updates.assign_add(1)
