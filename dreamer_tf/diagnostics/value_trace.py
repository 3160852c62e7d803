"""What the world model and the critic say along a recorded episode, beside what it returned.

`dreamer-tf diagnose trace` records one evaluation episode. This module filters
that episode again through the run's world model, the way the deterministic
policy does (posterior at every step, its latent replaced by the mode, the
recorded action as the previous action; only the dequantisation noise of
PlaNet's 5-bit images is drawn anew), and reads two heads at every step t:

- `model_reward`: the reward head's mean at s_t, against the reward recorded
  on reaching step t;
- `model_value`: the critic's value at s_t (absent for PlaNet, which has no
  critic), against the discounted return-to-go actually collected after t,
  G_t = r_{t+1} + gamma r_{t+2} + ..., gamma the run's `imag.discount`: the
  quantity the critic estimates (behavior.lambda_return pairs the reward of
  reaching s_{t+1} with v_{t+1}).

Near a time limit G_t is cut short while the value is not, so the trace also
holds `bootstrapped_return`: G_t with the critic's own value at the last step
standing in for the rewards past a time limit (left at 0 after a terminal
step). That is the value of s_t under the policy that ran, as far as the critic
is right at the end: a critic that has converged for this policy matches it at
every step, one still rising towards its fixed point sits below it.

The critic is trained towards the world model's returns, not the
environment's, so with an actor the trace also holds `imagined_return`: from
each traced state, the mean over a few rollouts of `horizon` imagined steps
under the actor (sampled actions and latents, as in training) of the
discounted model rewards plus the discounted critic value at the end. With a
horizon near 1 / (1 - discount) that is the value of s_t under the world
model and the actor, the fixed point the critic's 15-step lambda-returns
bootstrap towards. So the gap between `model_value` and `imagined_return` is
the critic's lag behind its own targets, and that between `imagined_return`
and `bootstrapped_return` the world model's error about where the actor leads.

A critic far below these, or flat across states whose futures differ (an
upright pole that is already drifting towards a fall), cannot tell the actor
what a state is worth beyond the imagination horizon.
"""

import numpy as np
import tensorflow as tf

from dreamer_tf.behavior import ActorCritic

ROWS = 10


def return_to_go(reward, discount, bootstrap=0.0):
    """G_t = reward[t+1] + discount G_{t+1} for a recorded episode, G = `bootstrap` at its end."""
    reward = np.asarray(reward, np.float64)
    togo = np.zeros_like(reward)
    togo[-1] = bootstrap
    for t in range(len(reward) - 2, -1, -1):
        togo[t] = reward[t + 1] + discount * togo[t + 1]
    return togo.astype(np.float32)


def default_horizon(discount):
    """round(1 / (1 - discount)) imagined steps: the discount's effective horizon."""
    return int(round(1 / (1 - discount)))


def imagined_return(agent, start, start_cont, horizon, samples, seed):
    """Mean discounted return of `samples` rollouts of `horizon` imagined steps
    from each of `start` (dict of [N, ...] latents) under the actor, with the
    critic's value at the end; 0 where `start_cont` is 0 (a terminal state).

    Only the running sums are kept, not the rollouts' states.
    """
    wm, behavior = agent.wm, agent.behavior
    rows = tf.shape(start['deter'])[0]
    state = {k: tf.repeat(start[k], samples, axis=0) for k in ('deter', 'stoch')}

    @tf.function
    def step(state, seed):
        new, _, _ = wm.rssm.imagine_step(behavior.imagine_policy, state, seed)
        return (new, *behavior.reward_and_discount(wm, wm.rssm.feat(new)))

    total = tf.zeros([rows * samples])
    reach = tf.ones([rows * samples])  # the discount product before each step
    for step_seed in tf.unstack(tf.random.experimental.stateless_split(seed, horizon)):
        state, reward, discount = step(state, step_seed)
        total += reach * reward
        reach *= discount
    total += reach * behavior.critic(wm.rssm.feat(state)).mean()
    mean = tf.reduce_mean(tf.reshape(total, [rows, samples]), 1)
    return (mean * tf.cast(start_cont, tf.float32)).numpy().astype(np.float32)


def model_along(agent, steps, horizon=None, samples=4):
    """The heads' readings along `steps` (a recorded episode, dict of [T, ...]).

    Returns dict of [T] float32 arrays: `model_reward`, `return_to_go`, and
    `model_value`, `bootstrapped_return` and `imagined_return` (`samples`
    rollouts of `horizon` steps, by default `default_horizon`) when
    the agent has a critic.
    """
    wm = agent.wm
    obs = {k: tf.convert_to_tensor(v) for k, v in steps.items() if k in agent.obs_space}
    seed = tf.constant([0, 0], tf.int32)
    embed = wm.encoder(wm.preprocess(obs, seed, augment=False))
    actions = tf.convert_to_tensor(steps['action'], tf.float32)
    is_first = tf.convert_to_tensor(steps['is_first'])
    latent = wm.rssm.initial(1)
    latents = []
    for t in range(len(steps['reward'])):
        latent = agent.posterior(
            latent, actions[t:t + 1], embed[t:t + 1], is_first[t:t + 1], seed, explore=False
        )
        latents.append(latent)
    latents = {k: tf.concat([x[k] for x in latents], 0) for k in ('deter', 'stoch')}
    feat = wm.rssm.feat(latents)
    discount = agent.config.imag.discount
    out = {
        'model_reward': wm.reward(feat).mean().numpy().astype(np.float32),
        'return_to_go': return_to_go(steps['reward'], discount),
    }
    if isinstance(agent.behavior, ActorCritic):
        value = agent.behavior.critic(feat).mean().numpy().astype(np.float32)
        truncated = bool(steps['is_last'][-1]) and not bool(steps['is_terminal'][-1])
        out['model_value'] = value
        out['bootstrapped_return'] = return_to_go(
            steps['reward'], discount, bootstrap=value[-1] if truncated else 0.0
        )
        horizon = default_horizon(discount) if horizon is None else horizon
        cont = 1 - np.asarray(steps['is_terminal'], np.float32)
        out['imagined_return'] = imagined_return(
            agent, latents, cont, horizon, samples, tf.constant([1, 0], tf.int32)
        )
    return out


def _correlation(a, b):
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float('nan')


def format_report(steps, model, discount):
    """A few lines comparing the heads' readings with the episode (arrays of `model_along`)."""
    reward = np.asarray(steps['reward'], np.float32)
    # The reset step has no reward to predict.
    error = model['model_reward'][1:] - reward[1:]
    lines = [
        'Model along the traced episode (posterior modes, as the deterministic policy filters):',
        (
            f'  reward head: RMSE {np.sqrt(np.mean(error**2)):.3f} against the rewards '
            f'(their std {reward[1:].std():.3f})'
        ),
    ]
    value, togo = model.get('model_value'), model['return_to_go']
    if value is not None:
        boot = model['bootstrapped_return']
        lines.append(
            f'  critic: mean value {value.mean():.2f} against a mean discounted return-to-go '
            f'of {togo.mean():.2f} (discount {discount}); '
            f'correlation {_correlation(value, togo):.2f}'
        )
        lines.append(
            f'  critic: against the return-to-go bootstrapped with its last value, mean '
            f'{boot.mean():.2f}; correlation {_correlation(value, boot):.2f}'
        )
        imagined = model['imagined_return']
        lines.append(
            f'  critic: against its targets\' fixed point, the imagined return under the actor, '
            f'mean {imagined.mean():.2f}; correlation {_correlation(value, imagined):.2f}; '
            f'the imagined against the bootstrapped return: correlation '
            f'{_correlation(imagined, boot):.2f}'
        )
    header = f'  {"step":>5} {"reward":>8} {"model reward":>13}'
    if value is not None:
        header += f' {"value":>9} {"return-to-go":>13} {"bootstrapped":>13} {"imagined":>9}'
    lines.append(header)
    for t in np.unique(np.linspace(0, len(reward) - 1, ROWS).round().astype(int)):
        row = f'  {t:5d} {reward[t]:8.2f} {model["model_reward"][t]:13.2f}'
        if value is not None:
            row += f' {value[t]:9.2f} {togo[t]:13.2f} {boot[t]:13.2f} {imagined[t]:9.2f}'
        lines.append(row)
    return '\n'.join(lines)
