"""The training loop shared by every preset: env -> replay -> update -> policy.

A run lives in `config.logdir`: config.yaml, replay/ (episodes as .npz),
checkpoints/ (model, optimisers, counters), metrics.jsonl and TensorBoard
events. Starting again with the same logdir resumes, also after `kill -9`:
finished episodes reload from disk, weights and counters from the latest
checkpoint, and only the unfinished episode is lost.
"""

import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dreamer_tf.agent import Agent, check_config
from dreamer_tf.config import Config, ConfigError
from dreamer_tf.envs import crafter
from dreamer_tf.envs.from_config import check_process, env_spec, envs_from_config, loop_eval_seed
from dreamer_tf.envs.process import keep_gl_out_of_this_process
from dreamer_tf.replay import Replay
from dreamer_tf.run.actors import Actors, check_actors
from dreamer_tf.run.checkpoint import Checkpointer
from dreamer_tf.run.collect import (
    LOG_PREFIX,
    Collector,
    check_eval_policy,
    evaluate,
    lockstep_events,
    random_action,
    reset_events,
    stack_obs,
)
from dreamer_tf.run.learner import Learner, copy_policy
from dreamer_tf.run.logger import EpisodeRecords, Logger, Mean, Profile, Progress
from dreamer_tf.run.rundir import RunLock, holds_run, move_aside
from dreamer_tf.run.schedule import check_schedule, schedule_count, scheduled_updates
from dreamer_tf.run.stop import Stopped, StopSignals
from dreamer_tf.run.video import dream_frames, image_key, write_video

ACHIEVEMENT_PREFIX = crafter.LOG_PREFIX[len(LOG_PREFIX) :]
# Frames the world model observes before dreaming open loop (DreamerV2's report: 5).
DREAM_CONTEXT = 5

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


def check_start(config, logdir):
    """Fails on a bad config or run directory before anything is written or started."""
    check_schedule(config.run)
    check_eval_policy(config.run.eval_policy)
    check_config(config)
    check_process(config.env)
    check_actors(config)
    if logdir.exists() and not logdir.is_dir():
        raise ConfigError(f'logdir {logdir} is a file; name a new or an existing run directory')


def open_run_dir(logdir, restart=False):
    """Creates `logdir` if needed and takes its lock (rundir.RunLock); with `restart`, a
    run found there is first moved aside (rundir.move_aside), never deleted."""
    logdir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(logdir).acquire()
    if restart and holds_run(logdir):
        try:
            moved = move_aside(logdir)
        finally:
            lock.release()
        print(f'--restart: moved the previous run to {moved}', flush=True)
        logdir.mkdir(parents=True)
        lock = RunLock(logdir).acquire()
    return lock


def train(config: Config, restart=False, env_fn=None):
    """Trains from `config` in `config.logdir`, resuming a run found there.

    A bad config or task raises ConfigError or envs.TaskError before anything is
    created on disk; a run directory that another training holds raises
    rundir.RunDirError, and checkpoints of which none restores CheckpointError,
    without changing what the run directory holds. `restart` moves a run found
    there aside (to `<logdir>.replaced-<time>`) and starts a new one. `env_fn`
    builds the gymnasium env instead of `config.task` (see `envs_from_config`).
    """
    keep_gl_out_of_this_process()
    logdir = Path(config.logdir).expanduser()
    check_start(config, logdir)
    tf.random.set_seed(config.seed)
    with contextlib.ExitStack() as stack:
        envs = collection(config, env_fn)
        stack.callback(envs.close)
        if config.run.video_every:
            image_key(envs.obs_space)  # fail now, not at the first video, without an image
        count = min(config.env.envs, config.run.eval_episodes)
        eval_envs = envs_from_config(config, count, loop_eval_seed(config), 'eval', env_fn)
        stack.callback(eval_envs.close)
        stack.callback(open_run_dir(logdir, restart).release)
        return _train(config, logdir, envs, eval_envs)


def collection(config, env_fn=None):
    """Where the training steps come from: this process's BatchEnv, or Ray actors."""
    if not config.distribute.actors:
        return envs_from_config(config, config.env.envs, config.seed, factory=env_fn)
    return Actors(config, config.distribute.actors, config.env.envs,
                  env_spec(config, env_fn), env_fn)


def _train(config, logdir, envs, eval_envs):
    session = Session(config, logdir, envs, eval_envs)
    session.run()
    report_skipped(session.agent)
    print(
        f'Done at {session.count["env_steps"]:,} env steps. Checkpoint: {session.ckpt.latest}\n'
        f'Metrics: {logdir / "metrics.jsonl"} (TensorBoard: tensorboard --logdir {logdir})',
        flush=True,
    )
    return session.agent, session.counters


class Session:
    """One training process on a run directory: env -> replay -> update -> policy, with
    evaluations, logs and checkpoints on their schedules, until `run.steps` or a stop."""

    def __init__(self, config, logdir, envs, eval_envs):
        run = self.run_config = config.run
        self.config, self.logdir, self.envs, self.eval_envs = config, logdir, envs, eval_envs
        self.rng = np.random.default_rng(config.seed)
        self.replay = Replay(
            logdir / 'replay', int(run.replay_capacity), run.batch_length, run.batch_size,
            seed=config.seed, ongoing=run.replay_ongoing, sampling=run.replay_sampling,
            prioritize_ends=run.prioritize_ends)
        self.agent = Agent(envs.obs_space, envs.act_space, config)
        self.counters = Counters()
        self.ckpt = Checkpointer(logdir / 'checkpoints', run.save_every_secs, agent=self.agent,
                                 counters=self.counters)
        restored = self.ckpt.restore()
        # Async collection acts with its own copy of the policy (run/learner.py).
        self.actor = self.agent
        self.remote = isinstance(envs, Actors)
        if run.mode == 'async' and not self.remote:
            self.actor = Agent(envs.obs_space, envs.act_space, config)
            copy_policy(self.agent, self.actor)
        self.learner, self._halt = None, False
        # Written only after a successful restore, so a failed resume keeps the old record.
        config.save(logdir / 'config.yaml')
        self._announce(restored)
        self.logger = Logger(logdir)
        self.progress = Progress(run.steps, run.prefill)
        self.records = EpisodeRecords(logdir, int(self.counters.env_steps.numpy()))
        self.train_metrics, self.episode_metrics = Mean(), Mean()
        self.profile = Profile()
        self.dataset = None
        self.count = {k: int(v.numpy()) for k, v in self.counters.counts().items()}
        self.last_log, self.refreshed = self.count['env_steps'], self.count['updates']
        # A resumed run keeps its schedule: the evaluations and videos due by the
        # checkpoint's step were made before it was written.
        done = lambda every: (schedule_count(self.count['env_steps'], run.prefill, every)
                              if restored else 0)
        self.evals_done, self.videos_done = done(run.eval_every), done(run.video_every)
        self.timer = {'time': time.time(), 'env_steps': self.last_log,
                      'updates': self.count['updates']}
        self.no_action = np.zeros(envs.act_space.n, np.float32)
        self.version = None  # the policy version of the latest chunk from the actors

    def _announce(self, restored):
        run, logdir, steps = self.run_config, self.logdir, int(self.counters.env_steps.numpy())
        print(f'Run directory: {logdir.resolve()}')
        print(f'Resumed from {restored} at {steps:,} env steps.' if restored
              else 'Starting a new run.')
        print(
            f'Replay holds {self.replay.num_steps:,} steps in {self.replay.num_episodes} '
            f'episodes. Precision {self.agent.precision}, XLA {"on" if self.agent.jit else "off"}'
            f', {len(self.envs)} env(s).'
            f'\nCurves: tensorboard --logdir {logdir} (or {logdir / "metrics.jsonl"})'
            + (f'\nVideos: {logdir / "videos"} and TensorBoard\'s Images tab, every '
               f'{run.video_every:,} env steps' if run.video_every and run.eval_every else ''),
            flush=True,
        )

    def run(self):
        """Collects, updates, evaluates, logs and saves until the budget or a stop signal;
        a stop saves a checkpoint and stores the episodes in progress."""
        # Env calls may be interrupted by a stop signal (run/stop.py); everything else
        # runs to the next check of `signals.requested`.
        self.signals = signals = StopSignals(self.run_config.stop_grace)
        with signals:
            try:
                self._remote_loop() if self.remote else self._local_loop()
            except Stopped:
                pass  # a stop signal interrupted an env call: stop as at any other point
            finally:
                self._stop_learner()
                signals.stopping()
                if signals.requested:
                    print(f'Stopped by {signals.name}: saving a checkpoint.', file=sys.stderr)
                self._save(force=True)
                # The episodes in progress go to the replay as truncated ones, so a
                # resume trains on every step the counters count. After the checkpoint:
                # a failed write here costs those steps, not the run's state.
                self.replay.store_partial()

    def _local_loop(self):
        self.collector = Collector(self.envs, self.config.env.action_repeat,
                                   self.signals.env_call)
        self._store(reset_events(self.collector, self.no_action), 0, 0)
        # The RSSM resets an env's state where is_first is set, so finished envs
        # need no special handling of the batched recurrent state.
        self.state = self.actor.initial_state(len(self.envs))
        self._start_learner()
        profile = self.profile
        while self.count['env_steps'] < self.run_config.steps and not self.signals.requested:
            with profile('collect'):
                self._collect()
            with profile('learn'):  # sync: the updates; async: waiting for the learner
                self._learn()
            with profile('housekeeping'):
                self._housekeeping()
        if self.learner is not None and not self.signals.requested:
            self.learner.finish()  # the updates still owed: as many as the sync loop's

    def _remote_loop(self):
        """Chunks from the Ray actors (run/actors.py): each is stored, then the updates it
        made due run before that actor is asked for its next one."""
        actors, run = self.envs, self.run_config
        self._publish()
        for index in range(len(actors.handles)):
            actors.request(index, self.count['env_steps'])
        profile = self.profile
        while self.count['env_steps'] < run.steps and not self.signals.requested:
            with profile('collect'):  # waiting for a chunk, and storing it
                received = actors.next()
                if received is None:
                    continue
                index, events, self.version = received
                if events is None:
                    self._actor_failed(index)
                else:
                    self._store_chunk(index, events)
            with profile('learn'):
                self._pay_updates()
                if self.count['updates'] - self.refreshed >= run.policy_refresh:
                    self._publish()
            with profile('housekeeping'):
                self._housekeeping()
            actors.request(index, self.count['env_steps'])

    def _publish(self):
        self.envs.publish([v.numpy() for v in self.agent.policy_variables()],
                          self.count['updates'])
        self.refreshed = self.count['updates']

    def _store_chunk(self, index, events):
        actors = self.envs
        width = actors.chunk * actors.envs_each
        events = [(actors.worker(index, w), step, first, episode)
                  for w, step, first, episode in events]
        self._store(events, width * self.config.env.action_repeat, width)

    def _actor_failed(self, index):
        """Its envs' unfinished episodes are dropped; its next chunk starts new ones."""
        actors = self.envs
        for worker in range(actors.envs_each):
            self.replay.drop_partial(actors.worker(index, worker))
        print(f'warning: actor {index} failed; the unfinished episodes of its envs are '
              'dropped and it starts new ones (Ray restarts it if its process ended)',
              file=sys.stderr, flush=True)

    def _actions(self):
        """Every env's action, and the version of the policy that chose them."""
        envs, count = self.envs, self.count
        if count['env_steps'] < self.run_config.prefill:
            return [random_action(envs.act_space, self.rng) for _ in envs.envs], -1
        action, self.state = self.actor.policy(
            stack_obs(self.collector.obs, envs.obs_space), self.state, env_steps=count['env_steps'])
        # The async loop acts with the copy made at `refreshed` updates.
        version = count['updates'] if self.actor is self.agent else self.refreshed
        return list(action.numpy()), version

    def _collect(self):
        """One lockstep step of every env into the replay; resets the envs that ended."""
        actions, version = self._actions()
        events = lockstep_events(self.collector, actions, self.no_action, version)
        self._store(events, len(self.envs) * self.config.env.action_repeat, len(self.envs))

    def _store(self, events, env_steps, policy_steps):
        """Steps (worker, step in replay form, whether it starts an episode, the episode it
        ends or None) into the replay, then counts `env_steps` and `policy_steps`."""
        count = self.count
        for worker, step, first, episode in events:
            if first:
                # After a reset nothing is in progress. Where the env worker (or actor)
                # died or hung, or returned non-finite data, the episode so far is dropped
                # and this step starts a new one (is_first resets the policy state).
                self.replay.drop_partial(worker)
            self.replay.add(step, worker=worker)
            if episode is not None:
                count['episodes'] += 1
                self.episode_metrics.add({'episode_return': episode['return'],
                                          'episode_length': episode['length'], **episode['logs']})
                # The env steps once these steps are counted (as a checkpoint counts).
                self.records.add(count['env_steps'] + env_steps, episode['length'],
                                 episode['return'], episode['logs'])
        count['env_steps'] += env_steps
        count['policy_steps'] += policy_steps

    def _updates_due(self):
        run, count = self.run_config, self.count
        if count['env_steps'] < run.prefill or not self.replay.can_sample:
            return 0
        # Policy steps since the end of prefill; N envs add N per batch step.
        since = count['policy_steps'] - -(-run.prefill // self.config.env.action_repeat)
        return max(0, scheduled_updates(run, since) - count['updates'])

    def _update(self):
        """One update on a replayed batch."""
        if self.dataset is None:
            self.dataset = iter(self.replay.dataset())
        with self.profile('update'):
            self.train_metrics.add(self.agent.train(next(self.dataset)))
        self.count['updates'] += 1

    def _pay_updates(self):
        """The updates now due, in this thread, until a stop signal."""
        for _ in range(self._updates_due()):
            if self.signals.requested:
                break
            self._update()

    def _learn(self):
        """Sync: the updates now due. Async: waits while the learner owes more than
        `run.async_slack` updates, then refreshes the acting policy if it is due."""
        run = self.run_config
        if self.learner is None:
            self._pay_updates()
            return
        self.learner.notify()
        self.learner.wait_while(lambda: self._updates_due() > run.async_slack)
        if self.count['updates'] - self.refreshed >= run.policy_refresh:
            with self.learner.lock:
                copy_policy(self.agent, self.actor)
                self.refreshed = self.count['updates']

    def _start_learner(self):
        if self.run_config.mode == 'async':
            stopped = lambda: self._halt or bool(self.signals.requested)
            self.learner = Learner(self._update, self._updates_due, stopped)
            self.learner.start()

    def _stop_learner(self):
        if self.learner is not None:
            self._halt = True
            self.learner.notify()
            self.learner.join()

    def _housekeeping(self):
        """Evaluation, logs and checkpoints when due; async: between two updates."""
        if self.learner is not None and not self._due():
            return
        with self.learner.lock if self.learner is not None else contextlib.nullcontext():
            self._evaluate()
            self._log()
            self._save()

    def _due(self):
        run, step = self.run_config, self.count['env_steps']
        return (schedule_count(step, run.prefill, run.eval_every) > self.evals_done
                or step - self.last_log >= run.log_every or self.ckpt.due())

    def _evaluate(self):
        run, step = self.run_config, self.count['env_steps']
        evals_due = schedule_count(step, run.prefill, run.eval_every)
        if evals_due <= self.evals_done or self.signals.requested:
            return
        self.evals_done = evals_due
        videos_due = schedule_count(step, run.prefill, run.video_every)
        film = videos_due > self.videos_done
        results = evaluate(self.agent, self.eval_envs, run.eval_episodes, run.eval_policy, film,
                           guard=self.signals.env_call)
        returns = [r['return'] for r in results]
        # Episodes and policy go with each evaluation: a resume may change either.
        self.logger.write(step, {
            'eval_return': np.mean(returns), 'eval_return_std': np.std(returns),
            'eval_episodes': len(returns), 'eval_sampled': run.eval_policy == 'sample'})
        self.logger.console(step, {'eval_return': float(np.mean(returns))}, CONSOLE,
                            self.progress)
        if film:
            self.videos_done = videos_due
            steps = next(r['steps'] for r in results if 'steps' in r)
            save_videos(self.agent, steps, self.logdir / 'videos', step, self.logger)

    def _log(self):
        step = self.count['env_steps']
        if step - self.last_log < self.run_config.log_every:
            return
        self.last_log = step
        metrics = {**self.train_metrics.result(), **self.episode_metrics.result()}
        metrics.update(suite_metrics(self.config.task, metrics))
        metrics.update(_rates(self.timer, step, self.count['updates']))
        metrics.update(self.profile.result())
        if self.version is not None:
            # How many updates behind the learner the actors' latest chunk acted.
            metrics['policy_lag'] = self.count['updates'] - self.version
        metrics['replay_steps'] = self.replay.num_steps
        self.logger.write(step, metrics)
        self.logger.console(step, metrics, CONSOLE, self.progress)
        warn_skipped(metrics)

    def _save(self, force=False):
        if force or self.ckpt.due():
            self.counters.assign(self.count)
            self.ckpt.save()


def warn_skipped(metrics):
    """Says which optimisers skipped updates since the last log (non-finite gradients)."""
    skipped = {k[: -len('_grad_finite')]: 1 - v for k, v in metrics.items()
               if k.endswith('_grad_finite') and not v >= 1}
    if skipped:
        parts = ', '.join(f'{name} {share:.0%}' for name, share in skipped.items())
        print(f'warning: updates skipped for non-finite gradients since the last log: {parts}',
              file=sys.stderr, flush=True)


def report_skipped(agent):
    """Says how many updates each optimiser skipped over the whole run, if any."""
    for opt in agent.optimizers.values():
        skipped = int(opt.skipped.numpy())
        if skipped:
            total = skipped + int(opt.step.numpy())
            print(f'warning: {opt.name} skipped {skipped:,} of {total:,} updates (non-finite '
                  'gradients); see *_grad_finite in metrics.jsonl', file=sys.stderr, flush=True)


def suite_metrics(task, metrics):
    """Suite scores computed from logged episode values: Crafter's score from success rates."""
    if not task.startswith('crafter_'):
        return {}
    rates = [v for k, v in metrics.items() if k.startswith(ACHIEVEMENT_PREFIX)]
    return {'crafter_score': crafter.score(rates)} if rates else {}


def save_videos(agent, steps, directory, step, logger=None):
    """The evaluation episode and, with a decoder for images, the model's dream of it,
    as GIFs in `directory` and (with `logger`) in TensorBoard's image dashboard."""
    key = image_key(agent.obs_space)
    videos = {'eval': steps[key]}
    # A dream needs a decoder for the image (Dreaming's contrastive models have
    # none) and an episode longer than the model's context.
    representation = agent.wm.representation
    decoded = representation.decodes and key in representation.decoder.cnn_keys
    if decoded and len(steps['is_first']) > DREAM_CONTEXT:
        videos['dream'] = dream_frames(agent, steps, DREAM_CONTEXT)
    for name, frames in videos.items():
        path = directory / f'{name}_{step}.gif'
        write_video(frames, path)
        if logger is not None:
            logger.gif(f'video/{name}', path.read_bytes(), frames.shape[2], frames.shape[1], step)


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
