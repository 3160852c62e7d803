"""The training loop shared by every preset: env -> replay -> update -> policy.

A run lives in `config.logdir`: config.yaml, replay/ (episodes as .npz),
checkpoints/ (model, optimisers, counters), metrics.jsonl and TensorBoard
events. Starting again with the same logdir resumes, also after `kill -9`:
finished episodes reload from disk, weights and counters from the latest
checkpoint, and only the unfinished episode is lost.
"""

import contextlib
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from dreamer_tf.agent import Agent, check_config
from dreamer_tf.config import EVAL_POLICIES, Config, ConfigError, load_config
from dreamer_tf.envs import check_task, crafter, make_env
from dreamer_tf.envs.parallel import NONFINITE, BatchEnv, process_envs
from dreamer_tf.envs.process import ProcessEnv, keep_gl_out_of_this_process
from dreamer_tf.replay import Replay
from dreamer_tf.run import checkpoint as checkpoints
from dreamer_tf.run.checkpoint import Checkpointer, CheckpointError
from dreamer_tf.run.logger import EpisodeRecords, Logger, Mean, Progress
from dreamer_tf.run.rundir import RunLock, holds_run, move_aside
from dreamer_tf.run.stop import Stopped, StopSignals
from dreamer_tf.run.video import dream_frames, image_key, write_video

# Step keys with this prefix are episode statistics for the logs (e.g. Crafter's
# achievements), kept out of the replay: the agent never sees them.
LOG_PREFIX = 'log_'
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


def env_args(config, seed, mode='train'):
    """make_env's arguments from the config's `task` and `env` blocks."""
    env = config.env
    return dict(
        task=config.task,
        seed=seed,
        action_repeat=env.action_repeat,
        time_limit=env.time_limit,
        size=tuple(env.size),
        obs=env.obs,
        camera=None if env.camera < 0 else env.camera,
        mode=mode,
        sticky=env.sticky,
        noops=env.noops,
        lives=env.lives,
        gray=env.gray,
        actions=env.actions,
        flatten=env.flatten,
        imports=tuple(env.imports),
    )


def check_process(env):
    if env.process not in ('auto', 'on', 'off'):
        raise ConfigError(f"env.process must be 'auto', 'on' or 'off', got {env.process!r}")
    if env.nonfinite not in NONFINITE:
        raise ConfigError(f'env.nonfinite must be one of {NONFINITE}, got {env.nonfinite!r}')


def uses_workers(config, count):
    """Whether `envs_from_config` steps its envs in worker processes."""
    env = config.env
    rendered = config.task.startswith('dmc_') and env.obs == 'vision'
    return env.process == 'on' or (env.process == 'auto' and (rendered or count > 1))


def check_factory(factory, workers):
    """Fails, saying why and what to do, on an env factory that worker processes
    (started by 'spawn', which pickles it by reference) could not rebuild."""
    if factory is None or not workers:
        return
    fix = ('define it at the top level of a .py module that you import, or train with '
           'env.envs 1 (or env.process off), which steps it in this process')
    try:
        pickle.dumps(factory)
    except Exception as error:  # pickle raises several types for one cause
        raise ConfigError(f'env_fn {factory!r} cannot be sent to env worker processes '
                          f'({error}); {fix}') from None
    main = sys.modules.get('__main__')
    if getattr(factory, '__module__', None) == '__main__' and not hasattr(main, '__file__'):
        raise ConfigError(f'env_fn {factory!r} is defined in a notebook or interactive '
                          f'session, which env worker processes cannot import; {fix}')


def env_from_config(config, seed, mode='train', factory=None):
    env = config.env
    check_process(env)
    args = dict(env_args(config, seed, mode), factory=factory)
    if uses_workers(config, 1):
        return ProcessEnv(env.worker_timeout, **args)
    return make_env(**args)


def envs_from_config(config, count, seed, mode='train', factory=None):
    """A BatchEnv of `count` envs seeded seed, seed + 1, ...

    More than one env runs in worker processes (so they step concurrently)
    unless env.process is 'off'; a single env follows `env_from_config`.
    `factory`: a callable returning the gymnasium env, instead of the task's name
    (the Python API's `env_fn`; `config.task` then only records where it came from).
    """
    if count < 1:
        raise ConfigError(f'env.envs must be >= 1, got {count}')
    check_process(config.env)
    check_factory(factory, uses_workers(config, count))
    if factory is None:
        # Here, not in the workers, whose errors arrive wrapped.
        check_task(config.task, config.env.imports)
    nonfinite = config.env.nonfinite
    if count == 1 or config.env.process == 'off':
        envs = [env_from_config(config, seed + i, mode, factory) for i in range(count)]
        return BatchEnv(envs, nonfinite=nonfinite, name=config.task)
    args = dict(env_args(config, seed, mode), factory=factory)
    del args['seed']  # process_envs seeds each env
    return process_envs(count, seed, config.env.worker_timeout, nonfinite, **args)


def random_action(act_space, rng):
    if act_space.discrete:
        return np.eye(act_space.n, dtype=np.float32)[rng.integers(act_space.n)]
    return rng.uniform(-1, 1, act_space.n).astype(np.float32)


def stack_obs(steps, keys):
    """The policy's input: observation keys and is_first of N steps, stacked."""
    return {k: np.stack([np.asarray(step[k]) for step in steps]) for k in (*keys, 'is_first')}


def replay_step(step, action):
    """A step as the replay stores it: without `log_` keys, with the action that led to it."""
    kept = {k: v for k, v in step.items() if not k.startswith(LOG_PREFIX)}
    return {**kept, 'action': action}


def episode_logs(step):
    """An episode's `log_` values at its last step, named without the prefix."""
    return {k[len(LOG_PREFIX) :]: float(v) for k, v in step.items() if k.startswith(LOG_PREFIX)}


def check_eval_policy(policy):
    if policy not in EVAL_POLICIES:
        raise ConfigError(f'run.eval_policy must be one of {EVAL_POLICIES}, got {policy!r}')


def evaluate(agent, envs, episodes, policy='mode', record=False, guard=contextlib.nullcontext):
    """Runs `episodes` episodes of the agent's policy on a BatchEnv (see `play`).

    `policy` is one of EVAL_POLICIES: the modes, latent and action sampled without
    the exploration noise, or the latent sampled and the actor's mode.
    """
    check_eval_policy(policy)
    explore, sample_latent = policy == 'sample', policy == 'sample_latent'
    act = lambda obs, state: agent.policy(obs, state, explore=explore, noise=False,
                                          sample_latent=sample_latent)
    return play_agent(agent, envs, episodes, act, record, guard)


def play_agent(agent, envs, episodes, policy, record=False, guard=contextlib.nullcontext):
    """Runs `episodes` episodes of `policy(obs, state) -> (action, state)`, one of the
    agent's policies (`Agent.policy`, `Agent.planning_policy`), from its initial state
    (see `play`)."""

    def act(obs, state):
        action, state = policy(stack_obs(obs, envs.obs_space), state)
        return action.numpy(), state

    return play(envs, episodes, act, agent.initial_state(len(envs)),
                agent.config.env.action_repeat, record, guard)


def evaluate_random(envs, episodes, repeat, seed, record=False):
    """Runs `episodes` episodes of the uniform-random policy of prefill (see `play`).

    The baseline a trained run's evaluation returns compare to; `seed` seeds
    the actions (one generator, drawn env by env at each lockstep step).
    """
    rng = np.random.default_rng(seed)

    def act(obs, state):
        return np.stack([random_action(envs.act_space, rng) for _ in obs]), state

    return play(envs, episodes, act, None, repeat, record)


def play(envs, episodes, act, state, repeat, record=False, guard=contextlib.nullcontext):
    """Runs `episodes` episodes of `act` on a BatchEnv, all envs in lockstep.

    `act(obs, state)` maps the list of every env's latest step and the policy
    state to ([envs, A] actions, new state); `repeat` is the env's action
    repeat. Env i runs a fixed share of the episodes (not "the first `episodes`
    to finish", which would favour short episodes). Every env call runs inside
    `guard()` (the training loop's `StopSignals.env_call`).

    Returns one dict per episode: `return`, `length` (env steps), the
    episode's `log_` values, and with `record` the first episode of env 0
    also holds `steps`: its transitions in replay form (dict of [T, ...]).
    """
    count = len(envs)
    quota = [episodes // count + (i < episodes % count) for i in range(count)]
    with guard():
        obs = envs.reset()
    totals, lengths = [0.0] * count, [0] * count
    kept = [replay_step(obs[0], np.zeros(envs.act_space.n, np.float32))] if record else None
    results = []
    active = [i for i in range(count) if quota[i]]
    while active:
        action, state = act(obs, state)
        with guard():
            outs = envs.step([action[i] for i in active], active)
        for i, out in zip(active, outs):
            obs[i] = out
            if i in envs.restarted:
                # A restarted worker's episode is played again from its new first step.
                totals[i], lengths[i] = 0.0, 0
                if kept is not None and i == 0:
                    kept = [replay_step(out, np.zeros(envs.act_space.n, np.float32))]
                continue
            totals[i] += float(out['reward'])
            lengths[i] += 1
            if kept is not None and i == 0:
                kept.append(replay_step(out, action[0]))
            if out['is_last']:
                result = {'return': totals[i], 'length': lengths[i] * repeat, **episode_logs(out)}
                if kept is not None and i == 0:
                    result['steps'] = {k: np.stack([s[k] for s in kept]) for k in kept[0]}
                    kept = None
                results.append(result)
                quota[i] -= 1
                totals[i], lengths[i] = 0.0, 0
        restart = [i for i in active if obs[i]['is_last'] and quota[i]]
        if restart:
            with guard():
                firsts = envs.reset(restart)
            for i, first in zip(restart, firsts):
                obs[i] = first
        active = [i for i in active if quota[i]]
    return results


def run_config(logdir, overrides=()):
    """A run's config.yaml read onto the current defaults (so runs saved before a
    key existed still load), with `overrides`, for evaluation on one device."""
    # Evaluation runs on one device, whatever devices the run trained on.
    overrides = {'distribute.strategy': 'none', **dict(overrides)}
    return load_config([], {**Config.load(Path(logdir) / 'config.yaml').to_dict(), **overrides})


def eval_seed(config, seed=None):
    """The eval envs' first seed: `seed`, or the run's seed + 20000 (unlike training
    and the training loop's evaluation)."""
    return config.seed + 20_000 if seed is None else seed


def load_run(logdir, envs=1, seed=None, checkpoint=None, overrides=(), env_fn=None):
    """A run's agent restored from its checkpoint, for evaluation.

    Reads the run's config (`run_config`), builds `envs` eval envs seeded from
    `eval_seed` (with `env_fn`, as the run was trained, if given) and restores
    the agent from `checkpoint` or the latest one. Returns (agent, config,
    BatchEnv, checkpoint path).
    """
    logdir = Path(logdir)
    config = run_config(logdir, overrides)
    check_checkpoints(logdir, checkpoint)
    batch = envs_from_config(config, envs, eval_seed(config, seed), 'eval', env_fn)
    try:
        agent = Agent(batch.obs_space, batch.act_space, config)
        path = restore_agent(agent, logdir, checkpoint)
    except BaseException:
        batch.close()
        raise
    return agent, config, batch, path


def load_agent(logdir, checkpoint=None, overrides=(), env_fn=None):
    """A run's agent restored from its checkpoint, without stepping an environment:
    the spaces come from one built in this process and never reset, so nothing
    renders and no worker process starts (export). Returns (agent, config, path)."""
    logdir = Path(logdir)
    config = run_config(logdir, overrides)
    check_checkpoints(logdir, checkpoint)
    spec = env_spec(config, env_fn)
    agent = Agent(spec['obs_space'], spec['act_space'], config)
    return agent, config, restore_agent(agent, logdir, checkpoint)


def env_spec(config, env_fn=None):
    """The run's env as an exported policy needs it: `obs_space`, `act_space` and
    `observation_spec` (its preprocessing, or None), from an env built in this process
    and never reset, so that nothing renders and no worker process starts."""
    if env_fn is None:
        check_task(config.task, config.env.imports)
    env = make_env(**env_args(config, eval_seed(config), 'eval'), factory=env_fn)
    spec = {'obs_space': env.obs_space, 'act_space': env.act_space,
            'observation_spec': getattr(env, 'observation_spec', None)}
    env.close()
    return spec


def check_checkpoints(logdir, checkpoint=None):
    directory = Path(logdir) / 'checkpoints'
    if not checkpoint and not checkpoints.saved(directory):
        raise FileNotFoundError(f'no checkpoint in {directory}')


def restore_agent(agent, logdir, checkpoint=None):
    """Restores `agent` from `checkpoint` or the run's newest one that restores; its path."""
    # Only the agent is restored: the counters in the file are expected leftovers.
    restorable = tf.train.Checkpoint(agent=agent)
    if not checkpoint:
        return checkpoints.restore(restorable, Path(logdir) / 'checkpoints', partial=True, hint='')
    try:
        restorable.restore(checkpoint).assert_existing_objects_matched().expect_partial()
    except Exception as error:  # any reader failure means an unusable checkpoint
        raise CheckpointError(f'cannot restore the agent from {checkpoint}: {error}') from None
    return checkpoint


def check_schedule(run):
    """Fails early, naming the key, on a training schedule the loop cannot follow."""
    if run.train_ratio < 0 or run.pretrain < 0:
        raise ConfigError(
            f'run.train_ratio and run.pretrain must be >= 0, got {run.train_ratio} and {run.pretrain}'
        )
    if not run.train_ratio and (run.train_every < 1 or run.train_steps < 0):
        raise ConfigError(
            'with run.train_ratio 0, updates follow run.train_every (>= 1 policy steps) and '
            f'run.train_steps (>= 0); got {run.train_every} and {run.train_steps}'
        )


def schedule_count(step, start, every):
    """How many points of the schedule start, start + every, start + 2 every, ...
    env step `step` has reached (0 if `every` is 0: no schedule).

    Evaluations come at the first env step at or past each point from the end
    of prefill on; videos at the first evaluation at or past each point of
    theirs. Counting from fixed points rather than from the last event keeps a
    resumed run on the schedule it started with: counting from the resumed
    step would put the next evaluation a whole interval after every restart.
    """
    if not every or step < start:
        return 0
    return (step - start) // every + 1


def scheduled_updates(run, since):
    """Total updates due once `since` policy steps have followed prefill (>= 0).

    V3: `train_ratio` replayed steps per policy step; V1/V2: `train_steps`
    updates every `train_every` policy steps, the first batch right after
    prefill. `pretrain` updates come on top, at the end of prefill. The loop
    tops its update count up to this total, so a resumed run repeats nothing.
    """
    if run.train_ratio:
        scheduled = int(since * run.train_ratio / (run.batch_size * run.batch_length))
    else:
        scheduled = (since // run.train_every + 1) * run.train_steps
    return run.pretrain + scheduled


def check_start(config, logdir):
    """Fails on a bad config or run directory before anything is written or started."""
    check_schedule(config.run)
    check_eval_policy(config.run.eval_policy)
    check_config(config)
    check_process(config.env)
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
        envs = envs_from_config(config, config.env.envs, config.seed, factory=env_fn)
        stack.callback(envs.close)
        if config.run.video_every:
            image_key(envs.obs_space)  # fail now, not at the first video, without an image
        count = min(config.env.envs, config.run.eval_episodes)
        eval_envs = envs_from_config(config, count, config.seed + 10_000, 'eval', env_fn)
        stack.callback(eval_envs.close)
        stack.callback(open_run_dir(logdir, restart).release)
        return _train(config, logdir, envs, eval_envs)


def _train(config, logdir, envs, eval_envs):
    run = config.run
    rng = np.random.default_rng(config.seed)
    replay = Replay(
        logdir / 'replay',
        int(run.replay_capacity),
        run.batch_length,
        run.batch_size,
        seed=config.seed,
        ongoing=run.replay_ongoing,
        sampling=run.replay_sampling,
        prioritize_ends=run.prioritize_ends,
    )
    agent = Agent(envs.obs_space, envs.act_space, config)
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
        f'Precision {agent.precision}, XLA {"on" if agent.jit else "off"}, {len(envs)} env(s).'
        f'\nCurves: tensorboard --logdir {logdir} (or {logdir / "metrics.jsonl"})'
        + (f'\nVideos: {logdir / "videos"} and TensorBoard\'s Images tab, every '
           f'{run.video_every:,} env steps' if run.video_every and run.eval_every else ''),
        flush=True,
    )

    logger = Logger(logdir)
    progress = Progress(run.steps, run.prefill)
    records = EpisodeRecords(logdir, int(counters.env_steps.numpy()))
    train_metrics, episode_metrics = Mean(), Mean()
    dataset = None
    repeat = config.env.action_repeat
    prefill_policy_steps = -(-run.prefill // repeat)
    count = {k: int(v.numpy()) for k, v in counters.counts().items()}
    last_log = count['env_steps']
    # A resumed run keeps its schedule: the evaluations and videos due by the
    # checkpoint's step were made before it was written.
    done = lambda every: schedule_count(count['env_steps'], run.prefill, every) if restored else 0
    evals_done, videos_done = done(run.eval_every), done(run.video_every)
    timer = {'time': time.time(), 'env_steps': last_log, 'updates': count['updates']}

    def updates_due():
        if count['env_steps'] < run.prefill or not replay.can_sample:
            return 0
        # Policy steps since the end of prefill; N envs add N per batch step.
        since = count['policy_steps'] - prefill_policy_steps
        return max(0, scheduled_updates(run, since) - count['updates'])

    def save(force=False):
        if force or ckpt.due():
            counters.assign(count)
            ckpt.save()

    no_action = np.zeros(envs.act_space.n, np.float32)
    # Env calls may be interrupted by a stop signal (run/stop.py); everything else
    # runs to the next check of `signals.requested`.
    signals = StopSignals(run.stop_grace)
    with signals:
        try:
            with signals.env_call():
                obs = envs.reset()
            for worker, first in enumerate(obs):
                replay.add(replay_step(first, no_action), worker=worker)
            # The RSSM resets an env's state where is_first is set, so finished envs
            # need no special handling of the batched recurrent state.
            state = agent.initial_state(len(envs))
            episode_return, episode_length = [0.0] * len(envs), [0] * len(envs)
            while count['env_steps'] < run.steps and not signals.requested:
                if count['env_steps'] < run.prefill:
                    actions = [random_action(envs.act_space, rng) for _ in envs.envs]
                else:
                    action, state = agent.policy(
                        stack_obs(obs, envs.obs_space), state, env_steps=count['env_steps']
                    )
                    actions = list(action.numpy())
                with signals.env_call():
                    obs = envs.step(actions)
                for worker, (out, action) in enumerate(zip(obs, actions)):
                    if worker in envs.restarted:
                        # Its worker died or hung, or it returned non-finite data: the episode
                        # so far is dropped and `out` is the first step of a new one (is_first
                        # resets the policy state).
                        replay.drop_partial(worker)
                        replay.add(replay_step(out, no_action), worker=worker)
                        episode_return[worker], episode_length[worker] = 0.0, 0
                        continue
                    replay.add(replay_step(out, action), worker=worker)
                    episode_return[worker] += float(out['reward'])
                    episode_length[worker] += 1
                    if out['is_last']:
                        count['episodes'] += 1
                        logs = episode_logs(out)
                        length = episode_length[worker] * repeat
                        episode_metrics.add(
                            {'episode_return': episode_return[worker], 'episode_length': length,
                             **logs}
                        )
                        # The env steps once this lockstep step is counted (as a checkpoint
                        # counts).
                        step = count['env_steps'] + len(envs) * repeat
                        records.add(step, length, episode_return[worker], logs)
                        episode_return[worker], episode_length[worker] = 0.0, 0
                count['env_steps'] += len(envs) * repeat
                count['policy_steps'] += len(envs)
                ended = [worker for worker, out in enumerate(obs) if out['is_last']]
                if ended:
                    with signals.env_call():
                        firsts = envs.reset(ended)
                    for worker, first in zip(ended, firsts):
                        obs[worker] = first
                        replay.add(replay_step(first, no_action), worker=worker)

                for _ in range(updates_due()):
                    if signals.requested:
                        break
                    if dataset is None:
                        dataset = iter(replay.dataset())
                    train_metrics.add(agent.train(next(dataset)))
                    count['updates'] += 1

                step = count['env_steps']
                evals_due = schedule_count(step, run.prefill, run.eval_every)
                if evals_due > evals_done and not signals.requested:
                    evals_done = evals_due
                    videos_due = schedule_count(step, run.prefill, run.video_every)
                    film = videos_due > videos_done
                    results = evaluate(agent, eval_envs, run.eval_episodes, run.eval_policy, film,
                                       guard=signals.env_call)
                    returns = [r['return'] for r in results]
                    # Episodes and policy go with each evaluation: a resume may change either.
                    logger.write(step, {
                        'eval_return': np.mean(returns), 'eval_return_std': np.std(returns),
                        'eval_episodes': len(returns), 'eval_sampled': run.eval_policy == 'sample'})
                    logger.console(step, {'eval_return': float(np.mean(returns))}, CONSOLE,
                                   progress)
                    if film:
                        videos_done = videos_due
                        steps = next(r['steps'] for r in results if 'steps' in r)
                        save_videos(agent, steps, logdir / 'videos', step, logger)
                if step - last_log >= run.log_every:
                    last_log = step
                    metrics = {**train_metrics.result(), **episode_metrics.result()}
                    metrics.update(suite_metrics(config.task, metrics))
                    metrics.update(_rates(timer, step, count['updates']))
                    metrics['replay_steps'] = replay.num_steps
                    logger.write(step, metrics)
                    logger.console(step, metrics, CONSOLE, progress)
                    warn_skipped(metrics)
                save()
        except Stopped:
            pass  # a stop signal interrupted an env call: stop as at any other point
        finally:
            signals.stopping()
            if signals.requested:
                print(f'Stopped by {signals.name}: saving a checkpoint.', file=sys.stderr)
            save(force=True)
            # The episodes in progress go to the replay as truncated ones, so a
            # resume trains on every step the counters count. After the checkpoint:
            # a failed write here costs those steps, not the run's state.
            replay.store_partial()
    report_skipped(agent)
    print(
        f'Done at {count["env_steps"]:,} env steps. Checkpoint: {ckpt.latest}\n'
        f'Metrics: {logdir / "metrics.jsonl"} (TensorBoard: tensorboard --logdir {logdir})',
        flush=True,
    )
    return agent, counters


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
    opts = [getattr(agent, name, None) for name in ('model_opt', 'actor_opt', 'critic_opt')]
    for opt in filter(None, opts):
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
    decoded = key in getattr(getattr(agent.wm, 'decoder', None), 'cnn_keys', ())
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
