"""The training loop shared by every preset: env -> replay -> update -> policy.

A run lives in `config.logdir`: config.yaml, replay/ (episodes as .npz),
checkpoints/ (model, optimisers, counters), metrics.jsonl and TensorBoard
events. Starting again with the same logdir resumes, also after `kill -9`:
finished episodes reload from disk, weights and counters from the latest
checkpoint, and only the unfinished episode is lost.
"""

import signal
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dreamer_tf.agent import Agent
from dreamer_tf.config import Config
from dreamer_tf.envs import make_env
from dreamer_tf.envs.process import ProcessEnv, keep_gl_out_of_this_process
from dreamer_tf.replay import Replay
from dreamer_tf.run.logger import Logger, Mean

CONSOLE = (
    ('fps', 'fps', '.0f'),
    ('updates_per_sec', 'upd/s', '.2f'),
    ('updates', 'updates', '.0f'),
    ('episode_return', 'return', '.1f'),
    ('eval_return', 'eval', '.1f'),
    ('model_loss', 'model', '.3f'),
    ('actor_loss', 'actor', '.3f'),
    ('critic_loss', 'critic', '.3f'),
)


class Counters(tf.Module):
    """Progress counters, checkpointed with the agent."""

    def __init__(self):
        super().__init__(name='counters')
        self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.policy_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.episodes = tf.Variable(0, dtype=tf.int64, trainable=False)

    def counts(self):
        return {
            'env_steps': self.env_steps,
            'policy_steps': self.policy_steps,
            'updates': self.updates,
            'episodes': self.episodes,
        }

    def assign(self, values):
        for key, var in self.counts().items():
            var.assign(values[key])


def env_from_config(config, seed, mode='train'):
    env = config.env
    args = dict(
        task=config.task,
        seed=seed,
        action_repeat=env.action_repeat,
        time_limit=env.time_limit,
        size=tuple(env.size),
        obs=env.obs,
        camera=None if env.camera < 0 else env.camera,
        mode=mode,
    )
    if env.process not in ('auto', 'on', 'off'):
        raise ValueError(f"env.process must be 'auto', 'on' or 'off', got {env.process!r}")
    rendered = config.task.startswith('dmc_') and env.obs == 'vision'
    if env.process == 'on' or (env.process == 'auto' and rendered):
        return ProcessEnv(**args)
    return make_env(**args)


def random_action(act_space, rng):
    if act_space.discrete:
        return np.eye(act_space.n, dtype=np.float32)[rng.integers(act_space.n)]
    return rng.uniform(-1, 1, act_space.n).astype(np.float32)


def batch_obs(obs, keys):
    return {k: np.asarray(obs[k])[None] for k in (*keys, 'is_first')}


class Checkpointer:
    """tf.train.Checkpoint of agent and counters, saved every few minutes and at exit."""

    def __init__(self, directory, every_secs, **objects):
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=2)
        self.every_secs, self.last = every_secs, time.time()

    def restore(self):
        path = self.manager.latest_checkpoint
        if not path:
            return None
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as error:  # any reader failure means an unusable checkpoint
            raise RuntimeError(
                f'cannot restore checkpoint {path}: {error}\nThe checkpoint is corrupt or was '
                'written by a different config. Nothing was changed on disk: move the '
                'checkpoints/ folder away to start the model afresh, or use another --logdir.'
            ) from None
        return path

    def due(self):
        return time.time() - self.last >= self.every_secs

    def save(self):
        self.manager.save()
        self.last = time.time()


def evaluate(agent, env, episodes):
    """Returns of `episodes` episodes with the deterministic policy."""
    returns = []
    for _ in range(episodes):
        obs, state, total = env.reset(), agent.initial_state(1), 0.0
        while not obs['is_last']:
            action, state = agent.policy(batch_obs(obs, env.obs_space), state, explore=False)
            obs = env.step(action.numpy()[0])
            total += float(obs['reward'])
        returns.append(total)
    return returns


def train(config: Config):
    keep_gl_out_of_this_process()
    logdir = Path(config.logdir).expanduser()
    logdir.mkdir(parents=True, exist_ok=True)
    tf.random.set_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    run = config.run
    env = env_from_config(config, config.seed)
    eval_env = env_from_config(config, config.seed + 10_000, mode='eval')
    replay = Replay(
        logdir / 'replay',
        int(run.replay_capacity),
        run.batch_length,
        run.batch_size,
        seed=config.seed,
    )
    agent = Agent(env.obs_space, env.act_space, config)
    counters = Counters()
    ckpt = Checkpointer(logdir / 'checkpoints', run.save_every_secs, agent=agent, counters=counters)
    restored = ckpt.restore()
    # Written only after a successful restore, so a failed resume keeps the old record.
    config.save(logdir / 'config.yaml')
    print(f'Run directory: {logdir.resolve()}')
    print(
        f'Resumed from {restored} at {int(counters.env_steps.numpy()):,} env steps.'
        if restored
        else 'Starting a new run.'
    )
    print(
        f'Replay holds {replay.num_steps:,} steps in {replay.num_episodes} episodes. '
        f'Precision {agent.precision}, XLA {"on" if agent.jit else "off"}.',
        flush=True,
    )

    logger = Logger(logdir)
    train_metrics, episode_metrics = Mean(), Mean()
    dataset = None
    repeat = config.env.action_repeat
    batch_steps = run.batch_size * run.batch_length
    prefill_policy_steps = -(-run.prefill // repeat)
    count = {k: int(v.numpy()) for k, v in counters.counts().items()}
    last_log = count['env_steps']
    last_eval = count['env_steps'] if restored else -run.eval_every
    timer = {'time': time.time(), 'env_steps': last_log, 'updates': count['updates']}

    def updates_due():
        if count['env_steps'] < run.prefill or replay.num_steps < run.batch_length:
            return 0
        if run.train_ratio:
            # V3's ratio of replayed steps to policy steps, counted from the end of prefill.
            since = count['policy_steps'] - prefill_policy_steps
            return max(0, int(since * run.train_ratio / batch_steps) - count['updates'])
        return run.train_steps if count['policy_steps'] % run.train_every == 0 else 0

    def save(force=False):
        if force or ckpt.due():
            counters.assign(count)
            ckpt.save()

    obs = env.reset()
    state = agent.initial_state(1)
    replay.add({**obs, 'action': np.zeros(env.act_space.n, np.float32)})
    episode_return, episode_length = 0.0, 0
    # SIGTERM only sets a flag: raising from the handler could land inside
    # tf.function tracing, which wraps exceptions. The loop stops at the next step.
    stop = []
    previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    try:
        while count['env_steps'] < run.steps and not stop:
            if count['env_steps'] < run.prefill:
                action = random_action(env.act_space, rng)
            else:
                action, state = agent.policy(batch_obs(obs, env.obs_space), state)
                action = action.numpy()[0]
            obs = env.step(action)
            replay.add({**obs, 'action': action})
            count['env_steps'] += repeat
            count['policy_steps'] += 1
            episode_return += float(obs['reward'])
            episode_length += 1
            if obs['is_last']:
                count['episodes'] += 1
                episode_metrics.add(
                    {'episode_return': episode_return, 'episode_length': episode_length * repeat}
                )
                obs = env.reset()
                state = agent.initial_state(1)
                replay.add({**obs, 'action': np.zeros(env.act_space.n, np.float32)})
                episode_return, episode_length = 0.0, 0

            for _ in range(updates_due()):
                if stop:
                    break
                if dataset is None:
                    dataset = iter(replay.dataset())
                train_metrics.add(agent.train(next(dataset)))
                count['updates'] += 1

            step = count['env_steps']
            if step - last_eval >= run.eval_every and step >= run.prefill:
                last_eval = step
                returns = evaluate(agent, eval_env, run.eval_episodes)
                logger.write(
                    step, {'eval_return': np.mean(returns), 'eval_return_std': np.std(returns)}
                )
                logger.console(step, {'eval_return': float(np.mean(returns))}, CONSOLE)
            if step - last_log >= run.log_every:
                last_log = step
                metrics = {**train_metrics.result(), **episode_metrics.result()}
                metrics.update(_rates(timer, step, count['updates']))
                metrics['replay_steps'] = replay.num_steps
                logger.write(step, metrics)
                logger.console(step, metrics, CONSOLE)
            save()
    except KeyboardInterrupt:
        stop.append(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if stop:
            print(
                f'Stopped by {signal.Signals(stop[0]).name}: saving a checkpoint.', file=sys.stderr
            )
        save(force=True)
        env.close()
        eval_env.close()
    print(
        f'Done at {count["env_steps"]:,} env steps. Checkpoint: {ckpt.manager.latest_checkpoint}\n'
        f'Metrics: {logdir / "metrics.jsonl"} (TensorBoard: tensorboard --logdir {logdir})',
        flush=True,
    )
    return agent, counters


def _rates(timer, step, updates):
    now = time.time()
    elapsed = max(now - timer['time'], 1e-9)
    rates = {
        'fps': (step - timer['env_steps']) / elapsed,
        'updates_per_sec': (updates - timer['updates']) / elapsed,
        'updates': updates,
    }
    timer.update(time=now, env_steps=step, updates=updates)
    return rates
