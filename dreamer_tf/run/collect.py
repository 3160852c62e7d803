"""Playing episodes: a policy on a BatchEnv of envs in lockstep, and the forms of a step
that the replay and the logs keep.
"""

import contextlib

import numpy as np

from dreamer_tf.config import EVAL_POLICIES, ConfigError
from dreamer_tf.replay import META_PREFIX

# Step keys with this prefix are episode statistics for the logs (e.g. Crafter's
# achievements), kept out of the replay: the agent never sees them.
LOG_PREFIX = 'log_'
# The learner's update count whose weights chose a step's action; -1 where no learned
# policy did (an episode's first step, prefill's random actions).
POLICY_VERSION = META_PREFIX + 'policy_version'


def random_action(act_space, rng):
    if act_space.discrete:
        return np.eye(act_space.n, dtype=np.float32)[rng.integers(act_space.n)]
    return rng.uniform(-1, 1, act_space.n).astype(np.float32)


def stack_obs(steps, keys):
    """The policy's input: observation keys and is_first of N steps, stacked."""
    return {k: np.stack([np.asarray(step[k]) for step in steps]) for k in (*keys, 'is_first')}


def replay_step(step, action, version=None):
    """A step as the replay stores it: without `log_` keys, with the action that led to it
    and, given a `version`, the version of the policy that chose that action (training's
    steps carry it: POLICY_VERSION; evaluation's recorded episodes do not)."""
    kept = {k: v for k, v in step.items() if not k.startswith(LOG_PREFIX)}
    meta = {} if version is None else {POLICY_VERSION: np.int64(version)}
    return {**kept, 'action': action, **meta}


def reset_events(collector, no_action, workers=None):
    """Resets `workers` (default all) of a Collector; their first steps as events (see
    `lockstep_events`)."""
    return [(worker, replay_step(first, no_action, -1), True, None)
            for worker, first in collector.reset(workers)]


def lockstep_events(collector, actions, no_action, version):
    """One lockstep step of a Collector's envs with `actions`, chosen by the policy of
    `version`, then the resets of the envs whose episodes ended. Returns one (worker,
    step in replay form, whether it starts an episode, the episode it ends or None) per
    env step, in order: a step starts an episode after a reset, or where its env worker
    was restarted."""
    events = [(worker, replay_step(out, no_action, -1) if action is None
               else replay_step(out, action, version), action is None, episode)
              for worker, out, action, episode in collector.step(actions)]
    ended = collector.ended()
    return events + (reset_events(collector, no_action, ended) if ended else [])


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
    agent's policies (`Agent.policy`, or diagnostics.planning's), from its initial state
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


class Collector:
    """Steps a BatchEnv of envs in lockstep and keeps each env's episode so far: the one
    stepping of the training loop and of evaluation.

    Every env call runs inside `guard()` (the training loop's `StopSignals.env_call`).
    `obs` holds every env's latest step.
    """

    def __init__(self, envs, repeat, guard=contextlib.nullcontext):
        self.envs, self.repeat, self.guard = envs, repeat, guard
        self.obs = [None] * len(envs)
        self._return, self._length = [0.0] * len(envs), [0] * len(envs)

    def reset(self, workers=None):
        """Resets `workers` (default all); returns [(worker, first step)]."""
        workers = list(range(len(self.envs))) if workers is None else list(workers)
        with self.guard():
            firsts = self.envs.reset(workers)
        for worker, first in zip(workers, firsts):
            self._begin(worker, first)
        return list(zip(workers, firsts))

    def step(self, actions, workers=None):
        """Steps `workers` (default all) with `actions` (one per worker); returns one
        (worker, step, action, episode) per worker. `action` is None where the worker was
        restarted (it died, hung or gave non-finite data): its episode so far is lost and
        `step` is the first of a new one. `episode` ends the worker's episode, at a step
        with `is_last`: its `return`, `length` (env steps) and `logs` (the `log_` values
        named without the prefix), else None.
        """
        workers = list(range(len(self.envs))) if workers is None else list(workers)
        with self.guard():
            outs = self.envs.step(list(actions), workers)
        events = []
        for worker, out, action in zip(workers, outs, actions):
            if worker in self.envs.restarted:
                self._begin(worker, out)
                events.append((worker, out, None, None))
                continue
            self.obs[worker] = out
            self._return[worker] += float(out['reward'])
            self._length[worker] += 1
            episode = None
            if out['is_last']:
                episode = {'return': self._return[worker],
                           'length': self._length[worker] * self.repeat,
                           'logs': episode_logs(out)}
            events.append((worker, out, action, episode))
        return events

    def ended(self, workers=None):
        """The workers among `workers` (default all) whose latest step ends an episode."""
        workers = range(len(self.envs)) if workers is None else workers
        return [w for w in workers if self.obs[w]['is_last']]

    def _begin(self, worker, first):
        self.obs[worker] = first
        self._return[worker], self._length[worker] = 0.0, 0


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
    count, no_action = len(envs), np.zeros(envs.act_space.n, np.float32)
    quota = [episodes // count + (i < episodes % count) for i in range(count)]
    collector = Collector(envs, repeat, guard)
    first = collector.reset()[0][1]
    kept = [replay_step(first, no_action)] if record else None
    results = []
    active = [i for i in range(count) if quota[i]]
    while active:
        action, state = act(collector.obs, state)
        for worker, out, taken, episode in collector.step([action[i] for i in active], active):
            if kept is not None and worker == 0:
                # A restarted worker's episode is played again from its new first step.
                kept = [replay_step(out, no_action)] if taken is None else (
                    kept + [replay_step(out, taken)])
            if episode is not None:
                result = {'return': episode['return'], 'length': episode['length'],
                          **episode['logs']}
                if kept is not None and worker == 0:
                    result['steps'] = {k: np.stack([s[k] for s in kept]) for k in kept[0]}
                    kept = None
                results.append(result)
                quota[worker] -= 1
        restart = [i for i in collector.ended(active) if quota[i]]
        if restart:
            collector.reset(restart)
        active = [i for i in active if quota[i]]
    return results
