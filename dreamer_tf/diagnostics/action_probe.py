"""Does a dm_control run's world model rank actions as the task does?

A run stuck at one return (cartpole_balance's 136 is the actor's mode held at
a bound) has a wrong world model or an actor that cannot follow a right one.
This probe tells the two apart. It plays one evaluation episode with the
run's deterministic policy. At chosen policy steps it holds each of a few
constant actions for H steps twice:

- in the model, imagined from the current posterior state: the sum of the
  reward head's predictions and the critic's value H steps ahead, each the
  mean over 16 imagined futures (the prior's latents are sampled);
- in the simulator, from a saved MuJoCo state that is restored afterwards:
  the true sum of rewards.

It also reports the actor's mode and its raw (pre-tanh) mean: a mean beyond
about +-9 puts the mode at exactly +-1 in float32, where tanh's gradient is
0 (the `actor_dead` metric of training).

The simulator runs in a spawned worker without TensorFlow, because MuJoCo's
GL context and TensorFlow cannot share a process (dreamer_tf/envs/process.py).
"""

import multiprocessing
import os

import numpy as np

from dreamer_tf.envs.process import RENDER_GL

LEVELS = (-1.0, -0.5, 0.0, 0.5, 1.0)
SAMPLES = 16


def _simulator(pipe, gl_backend, task, obs, size, camera, repeat, seed, horizon, levels):
    """Worker: steps the task on request, and measures constant-action lookaheads."""
    os.environ['MUJOCO_GL'] = gl_backend
    from dreamer_tf.envs.dmc import DMC, parse_task

    env = DMC(*parse_task(task), obs=obs, size=size, camera=camera, seed=seed, repeat=repeat)
    act_dim = env.act_space.n
    try:
        while True:
            command, arg = pipe.recv()
            if command == 'reset':
                pipe.send(env.reset())
            elif command == 'step':
                pipe.send(env.step(arg))
            elif command == 'lookahead':
                saved = env.save_state()
                sums = []
                for level in levels:
                    total = 0.0
                    for _ in range(horizon):
                        step = env.step(np.full(act_dim, level, np.float32))
                        total += float(step['reward'])
                        if step['is_last']:
                            break
                    sums.append(total)
                    env.restore_state(saved)
                pipe.send(sums)
            else:
                break
    finally:
        env.close()


class _Simulator:
    """The task in a spawned worker without TensorFlow (`_simulator`), asked step by step."""

    def __init__(self, config, seed, horizon, levels):
        env = config.env
        context = multiprocessing.get_context('spawn')
        self.pipe, child = context.Pipe()
        camera = None if env.camera < 0 else env.camera
        args = (child, RENDER_GL, config.task[4:], env.obs, tuple(env.size), camera,
                env.action_repeat, seed, horizon, tuple(levels))
        self.task = config.task
        self.worker = context.Process(target=_simulator, args=args, daemon=True)
        self.worker.start()
        child.close()  # so that a dead worker ends `recv` with EOFError instead of a hang

    def ask(self, command, arg=None):
        try:
            self.pipe.send((command, arg))
            return self.pipe.recv()
        except (EOFError, OSError):
            self.worker.join(10)
            raise RuntimeError(f'the simulator worker for {self.task!r} died '
                               f'(exit code {self.worker.exitcode})') from None

    def close(self):
        try:
            self.pipe.send(('close', None))
        except OSError:  # the worker is gone already
            pass
        self.worker.join(30)


def _imagined(agent, latent, level, horizon, seed):
    """The model's (reward sum, critic value at the end) of `level` held for `horizon` steps
    from `latent`: means over SAMPLES imagined futures (the prior's latents are drawn)."""
    import tensorflow as tf

    from dreamer_tf.behavior import ActorCritic

    wm, act_dim = agent.wm, agent.act_space.n
    latent = {k: tf.repeat(v, SAMPLES, 0) for k, v in latent.items()}
    policy = lambda feat, _: (tf.fill([SAMPLES, act_dim], level), tf.zeros([SAMPLES, 0]))
    states, _, _ = wm.rssm.imagine(policy, latent, horizon, tf.constant([seed, 0]))
    feat = wm.rssm.feat(states)
    reward = float(tf.reduce_mean(tf.reduce_sum(wm.reward(feat).mean()[1:], 0)))
    if not isinstance(agent.behavior, ActorCritic):
        return reward, None
    return reward, float(tf.reduce_mean(agent.behavior.critic(feat).mean()[-1]))


def _row(agent, latent, t, levels, horizon, seed):
    """The model's side of the probe at policy step `t`: the actor's mode and raw mean,
    and each level's imagined reward sum and value."""
    from dreamer_tf.behavior import ActorCritic

    row = {'step': t, 'mode': None, 'raw_mean': None}
    behavior = agent.behavior
    if isinstance(behavior, ActorCritic):
        raw = behavior.actor.raw(agent.wm.rssm.feat(latent))
        row['mode'] = behavior.actor.dist_from(raw).mode().numpy()[0].tolist()
        row['raw_mean'] = raw.numpy()[0, :agent.act_space.n].tolist()
    model = [_imagined(agent, latent, level, horizon, seed) for level in levels]
    row['model_reward'] = [m[0] for m in model]
    row['model_value'] = [m[1] for m in model]
    return row


def probe(logdir, steps=(5, 20, 60, 120), horizon=15, levels=LEVELS, seed=None):
    """Model and true lookaheads of the run in `logdir` at the policy steps `steps`.

    Returns {'checkpoint', 'return' (of the whole episode), 'levels', 'rows',
    'missed' (steps after the episode's end)}, one row per probed step:
    {'step', 'mode', 'raw_mean', 'model_reward', 'model_value', 'true_reward'},
    the last three lists over `levels` (constant actions, every action
    dimension at that level). The episode's seed defaults to `dreamer-tf eval`'s
    (`envs.from_config.eval_seed`).
    """
    from dreamer_tf.envs.from_config import eval_seed
    from dreamer_tf.run.restore import load_run

    if horizon < 1 or not levels or any(abs(x) > 1 for x in levels):
        raise ValueError(f'need horizon >= 1 and levels in [-1, 1], got {horizon}, {levels}')
    agent, config, envs, path = load_run(logdir)
    envs.close()
    if not config.task.startswith('dmc_'):
        raise ValueError(
            f'the action probe restores MuJoCo states; {logdir} trained on {config.task!r}')
    seed = eval_seed(config, seed)
    simulator = _Simulator(config, seed, horizon, levels)
    rows, total, t = [], 0.0, 0
    try:
        step, state = simulator.ask('reset'), agent.initial_state(1)
        while True:
            obs = {k: np.asarray(step[k])[None] for k in [*agent.obs_space, 'is_first']}
            action, state = agent.policy(obs, state, explore=False)
            if t in steps:
                row = _row(agent, state[0], t, levels, horizon, seed)
                rows.append({**row, 'true_reward': simulator.ask('lookahead')})
            step = simulator.ask('step', np.asarray(action)[0])
            total, t = total + float(step['reward']), t + 1
            if step['is_last']:
                break
    finally:
        simulator.close()
    missed = sorted(set(steps) - {row['step'] for row in rows})
    return {'checkpoint': path, 'return': total, 'levels': list(levels), 'rows': rows,
            'missed': missed}


def format_report(result, horizon):
    """The probe's result as the lines `dreamer-tf diagnose probe` prints."""
    levels = ' '.join(f'{x:+.1f}' for x in result['levels'])
    lines = [
        f"checkpoint {result['checkpoint']}; episode return {result['return']:.1f}",
        f'constant actions {levels}, each held {horizon} policy steps:',
    ]
    fmt = lambda xs: ' '.join('   -  ' if x is None else f'{x:6.1f}' for x in xs)
    for row in result['rows']:
        head = f"step {row['step']:4d}"
        if row['mode'] is not None:
            mode = ' '.join(f'{x:+.2f}' for x in row['mode'])
            raw = ' '.join(f'{x:+.1f}' for x in row['raw_mean'])
            head += f' | actor mode {mode} (raw mean {raw})'
        lines.append(head)
        lines.append(f"    model rewards {fmt(row['model_reward'])}")
        if row['model_value'][0] is not None:
            lines.append(f"    model value   {fmt(row['model_value'])}")
        lines.append(f"    true rewards  {fmt(row['true_reward'])}")
    if result['missed']:
        lines.append(f"not probed, after the episode's end: steps {result['missed']}")
    return '\n'.join(lines)
