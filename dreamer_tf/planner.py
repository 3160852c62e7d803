"""PlaNet's planner: the cross-entropy method (CEM) in the learned latent space.

Hafner et al. 2019 (PlaNet), sec. 3 "Planning algorithm" and google-research/planet
`control/planning.py`: from the current posterior state, for each environment,
1. start from a belief over action sequences a_{t:t+H} ~ N(mean, std^2), mean 0, std 1;
2. draw J candidate sequences, clip them to the action box [-1, 1];
3. roll each out with the prior transition (sampled states, as PlaNet's RSSM
   does without observations) and score it by the sum of predicted rewards
   sum_{tau=t+1..t+H} E[r(s_tau)];
4. refit mean and std to the K best candidates (std = sqrt(var + 1e-6), as the
   PlaNet code) and repeat from 2 for I iterations;
5. act the first action of the final mean (model-predictive control: the plan
   is made again at every step).
PlaNet: H 12, J 1000, I 10, K 100. The whole plan for a batch of N environments
is one batched computation: the N * J candidate rollouts run as one batch of
prior steps, so it sits inside the agent's single compiled policy step.
Exploration noise (0.3 while collecting) is added by the agent, not here.

Given a `value` function and a `discount` gamma, a candidate's score is instead
sum_{tau=1..H} gamma^(tau-1) E[r(s_tau)] + gamma^H v(s_H): the objective of a
Dreamer agent's actor, which `dreamer-tf diagnose plan` plans against to
tell whether a run's world model and critic or its actor limit its return.
"""

import tensorflow as tf

from dreamer_tf.config import ConfigError


class CEM(tf.Module):
    def __init__(self, act_dim, *, horizon, candidates, iterations, top, name='cem'):
        super().__init__(name=name)
        for key, value in (
            ('horizon', horizon),
            ('candidates', candidates),
            ('iterations', iterations),
            ('top', top),
        ):
            if value < 1:
                raise ValueError(f'planner.{key} must be >= 1, got {value}')
        if top > candidates:
            raise ValueError(f'planner.top ({top}) cannot exceed planner.candidates ({candidates})')
        self.act_dim = act_dim
        self.horizon, self.candidates = horizon, candidates
        self.iterations, self.top = iterations, top

    def __call__(self, rssm, reward, start, seed, value=None, discount=1.0):
        """Plan from `start` (RSSM state dict of [N, ...]); returns actions [N, A].

        `reward(feat)` maps model features [..., F] to predicted rewards [...],
        and `value(feat)`, if given, to the values that end each candidate's score.
        """
        mean, _ = self.plan(rssm, reward, start, seed, value, discount)
        return mean[:, 0]

    def plan(self, rssm, reward, start, seed, value=None, discount=1.0):
        """The final belief (mean, std), each [N, H, A], over action sequences."""
        # The static batch size where known keeps the scan's belief shapes fixed.
        envs = start['deter'].shape[0] or tf.shape(start['deter'])[0]
        count, horizon = self.candidates, self.horizon
        # Row n * J + j holds candidate j of env n, matching the reshape of actions below.
        tiled = {k: tf.repeat(v, count, axis=0) for k, v in start.items()}
        shape = [envs, horizon, self.act_dim]

        def iteration(belief, step_seed):
            mean, std = belief
            seed_noise, seed_model = tf.unstack(
                tf.random.experimental.stateless_split(step_seed, 2)
            )
            noise = tf.random.stateless_normal([envs, count, horizon, self.act_dim], seed_noise)
            actions = tf.clip_by_value(mean[:, None] + std[:, None] * noise, -1.0, 1.0)
            flat = tf.reshape(actions, [envs * count, horizon, self.act_dim])
            returns = self.returns(rssm, reward, tiled, flat, seed_model, value, discount)
            returns = tf.reshape(returns, [envs, count])
            _, best = tf.math.top_k(returns, self.top, sorted=False)
            elite = tf.gather(actions, best, batch_dims=1)
            mean, variance = tf.nn.moments(elite, [1])
            return mean, tf.sqrt(variance + 1e-6)

        seeds = tf.random.experimental.stateless_split(seed, self.iterations)
        belief = (tf.zeros(shape), tf.ones(shape))
        means, stds = tf.scan(iteration, seeds, initializer=belief)
        return means[-1], stds[-1]

    def returns(self, rssm, reward, start, actions, seed, value=None, discount=1.0):
        """The scores [M] of `actions` [M, H, A] from `start`: the (discounted) sum of
        predicted rewards of the states they reach, plus gamma^H v(s_H) given `value`."""
        seeds = tf.random.experimental.stateless_split(seed, self.horizon)

        def step(state, inputs):
            action, step_seed = inputs
            return rssm.img_step(state, action, step_seed)

        states = tf.scan(step, (tf.transpose(actions, [1, 0, 2]), seeds), initializer=start)
        feat = rssm.feat(states)
        # Weights of 1 multiply exactly, so PlaNet's undiscounted sum is unchanged.
        weights = tf.pow(float(discount), tf.range(self.horizon, dtype=tf.float32))
        total = tf.reduce_sum(weights[:, None] * reward(feat), 0)
        if value is not None:
            total += float(discount) ** self.horizon * value(feat[-1])
        return total


class Planner(tf.Module):
    """PlaNet's behaviour: no actor or critic; every action is planned by CEM over the
    world model's predicted rewards, and the update trains the world model only.

    The behaviour component interface is ActorCritic's (dreamer_tf/behavior.py).
    CEM samples its own candidates, so `act` plans alike with and without `explore`.
    """

    exportable = False
    optimizers = {}

    def __init__(self, act_space, planner, name='planner'):
        super().__init__(name=name)
        if act_space.discrete:
            raise ConfigError(
                'behavior cem (PlaNet) plans continuous actions in [-1, 1]; '
                'this environment has discrete actions'
            )
        self.cem = CEM(act_space.n, **planner)

    @classmethod
    def from_config(cls, wm, act_space, config, compute_dtype, loss_scale):
        return cls(act_space, config.planner)

    def policy_variables(self):
        return []

    def act(self, wm, latent, seed, explore):
        reward = lambda feat: wm.reward(feat).mean()
        return self.cem(wm.rssm, reward, latent, seed)

    def train(self, wm, start, seed, replicas):
        return {}
