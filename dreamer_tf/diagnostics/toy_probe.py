"""What a `toy_reach` run's agent has learned, read off a replay batch.

A failed learning check (scripts/learning_check.py) says that a preset did not
learn; these numbers say which part did not. The replay batch is filtered
through the world model, and a linear read-out of (position, goal) is fitted
by ridge regression on the posterior states of half the batch (the decoder is
not used, so decoder-free presets are probed the same way; ridge penalty 1):

- `readout_error`: the read-out's mean |error| of position and goal on the other
  half: whether the model state holds them at all;
- `imagined_goal_error`: the read-out's goal error on the states imagined from
  every posterior state under the actor, per imagination step: whether the
  prior keeps the goal (it is constant within an episode);
- `return_corr`, `critic_corr`: correlation of the lambda-returns and of the
  critic's values at the start states with -|position - goal|, the shape of
  the true value;
- `actor_agrees`: the fraction of states farther than 0.25 from the goal where
  the actor's mode moves towards it, and `actor_saturation`, its mean |action|.

PlaNet (no actor or critic) gets the read-out errors only.
"""

import numpy as np
import tensorflow as tf

from dreamer_tf.behavior import ActorCritic, lambda_return
from dreamer_tf.replay import Replay
from dreamer_tf.run.restore import load_run

FAR = 0.25
RIDGE = 1.0


def probe(logdir, batch=32, length=64, seed=1):
    """The numbers of the module docstring for the run in `logdir`, as a dict of floats
    (`imagined_goal_error`: a list, start state first)."""
    agent, config, envs, _ = load_run(logdir)
    envs.close()
    if not config.task.startswith('toy_'):
        raise ValueError(f'the toy probe reads toy_reach runs; {logdir} trained on {config.task!r}')
    wm, rssm, behavior = agent.wm, agent.wm.rssm, agent.behavior
    replay = Replay(f'{logdir}/replay', int(config.run.replay_capacity), length, batch, seed=seed)
    data = {k: tf.convert_to_tensor(v) for k, v in replay.sample().items()}
    post, _ = rssm.observe(
        wm.encoder(data), data['action'], data['is_first'], tf.constant([seed, 0])
    )
    start = {k: tf.reshape(v, [-1, *v.shape[2:]]) for k, v in post.items()}
    truth = data['vector'].numpy().reshape(-1, 2)
    position, goal = truth.T
    feat = rssm.feat(start).numpy()
    half = len(feat) // 2
    weights = _ridge(_affine(feat[:half]), truth[:half])
    held_out = _affine(feat[half:]) @ weights
    out = {
        'readout_error': [float(x) for x in np.abs(held_out - truth[half:]).mean(0)],
    }
    if not isinstance(behavior, ActorCritic):
        return out
    traj = behavior.imagine(wm, start, tf.ones([len(feat)]), tf.constant([seed, 1]))
    imagined = _affine(traj['feat'].numpy()) @ weights
    out['imagined_goal_error'] = [float(x) for x in np.abs(imagined[..., 1] - goal).mean(1)]
    value = behavior.critic(traj['feat']).mean()
    returns = lambda_return(traj['reward'], value, traj['discount'], config.imag['lambda'])
    true_value = -np.abs(position - goal)
    out['return_corr'] = _corr(returns[0].numpy(), true_value)
    out['critic_corr'] = _corr(value[0].numpy(), true_value)
    mode = behavior.actor(rssm.feat(start)).mode().numpy()
    move = mode.argmax(-1) - 1.0 if agent.act_space.discrete else mode[:, 0]
    far = np.abs(goal - position) > FAR
    out['actor_agrees'] = float(np.mean(np.sign(move[far]) == np.sign(goal - position)[far]))
    out['actor_saturation'] = float(np.abs(move).mean())
    return out


def _ridge(x, y, penalty=RIDGE):
    # Categorical latents make the features collinear (each group of one-hots sums to
    # 1, like the bias column): plain least squares then returns huge weights.
    return np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[-1]), x.T @ y)


def _affine(x):
    return np.concatenate([x, np.ones(x.shape[:-1] + (1,))], -1)


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])
