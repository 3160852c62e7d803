"""CEM over a run's world model and critic in place of its actor (`dreamer-tf diagnose plan`).

Candidates are scored by their discounted predicted rewards plus the critic's value at
the planner's horizon, with the imagination discount: the actor's own objective,
searched instead of learned. Its return beside the actor's tells whether a run's world
model and critic or its actor limit it.
"""

import tensorflow as tf

from dreamer_tf.behavior import ActorCritic


def planning_policy(agent, planner):
    """A policy `act(obs, state) -> (action, state)` without exploration that acts by
    `planner` (a `planner.CEM`) over `agent`'s world model instead of by its actor.

    The filter step is evaluation's (posterior mode). Continuous actions and agents with
    a critic only (PlaNet's policy already plans, without one).
    """
    if not isinstance(agent.behavior, ActorCritic) or agent.act_space.discrete:
        raise ValueError(
            'planning over the world model needs an actor-critic agent with continuous '
            'actions (PlaNet already plans; discrete actions have no CEM here)'
        )
    wm, critic = agent.wm, agent.behavior.critic
    reward = lambda feat: wm.reward(feat).mean()
    value = lambda feat: critic(feat).mean()
    discount = agent.config.imag.discount

    def step(obs, state, seed):
        latent, seed_act, _ = agent.observe(obs, state, seed, sample=False)
        action = planner(wm.rssm, reward, latent, seed_act, value, discount)
        return action, (latent, action)

    step = tf.function(step, jit_compile=agent.jit)
    return lambda obs, state: step(agent.obs_tensors(obs), state, agent.rng.make_seeds(1)[:, 0])
